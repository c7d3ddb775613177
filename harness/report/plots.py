"""The report's figures, one per task and kind, as PNG and PDF (harness-report --plots: either, or none):

- rank sweep: headline metric vs LoRA rank r (log2 axis), one line per target set ({q}, {q,v}, {q,k,v,o});
- parameter budget: headline metric vs trainable parameters without the head (log10 axis), one line per method;
- learning curves: headline metric vs epoch (metrics.per_epoch), one line per configuration; past FACET_OVER (12)
  configurations one panel per method (shared y axis), a method with more than PANEL_LINES split by its variant less
  the size (LoRA {q} init=kaiming: a line per r), a panel still over PANEL_LINES shows its best PANEL_LINES, and a
  figure of more than MAX_PANELS (12) panels shows the best MAX_PANELS (a sweep of thousands of runs: drawing every
  panel costs seconds per figure, and a page of forty small panels is read by no one; the tables list them all).

Lines are the median over seeds, bands the min–max over seeds, each line its own colour and marker. Baseline runs
(layouts.baseline_label: trained nothing) are left out: they have no curve, rank or trained parameters to plot.
Figures are built with matplotlib's object API (`Figure`, Agg canvas) so that pyplot's global state and backend are
left alone, under the default style so a user's matplotlibrc cannot change them, and saved without the dated /
versioned metadata so that the bytes are reproducible.
A plot the runs cannot support is skipped with a sentence saying what it needs.
"""
import math
import re
from statistics import median

import matplotlib
import matplotlib.style
import pandas as pd
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.layout_engine import TightLayoutEngine
from matplotlib.ticker import MaxNLocator

from harness import catalog
from harness.report.frames import records
from harness.report.layouts import LORA_METHODS, baseline_label
from harness.report.tables import completed_runs, scale_of

PNG_META = {"Software": None}
PDF_META = {"CreationDate": None, "ModDate": None}


# The runs-frame columns the plots read (besides the metrics.best.* they score with).
PLOTTED = ("model", "task", "method", "variant", "targets", "headline", "params.trainable_no_head", "config.method.r",
           "config.method.budget", "config.trainer.epochs", "config.trainer.max_steps", "metrics.per_epoch")


def _scores(runs):
    """Completed runs with `score`: the best-epoch headline metric on the paper's scale (×100 for accuracies)."""
    done = completed_runs(runs)
    done = done[[c for c in done.columns if c in PLOTTED or c.startswith("metrics.best.")]]
    done = done[[baseline_label(row) is None for row in _rows(done, ["config.trainer.epochs", "config.trainer.max_steps",
                                                                     "method"])]].copy()
    done["score"] = [row.get(f"metrics.best.{row['headline']}", math.nan) * scale_of(row["headline"])[0]
                     for row in _rows(done, ["headline", *(c for c in done.columns if c.startswith("metrics.best."))])]
    return done[done["score"].notna()]


def _rows(frame, columns):
    """The frame's rows as dicts of `columns` (those present): what iterrows gives, without a Series per row."""
    return records(frame, [c for c in columns if c in frame.columns])


def _label(parts, shown):
    """A legend label from the parts that vary between lines (the model is left out when there is only one)."""
    return " · ".join(str(p) for p, keep in zip(parts, shown) if keep and p) or str(parts[-1])


def _method_label(method):
    return catalog.method_label(method).replace("^peft", " (peft)").replace("^", "")


def _band(ax, points, label):
    """Median line with markers and a min–max band; `points` maps x → list of scores."""
    xs = sorted(points)
    (line,) = ax.plot(xs, [median(points[x]) for x in xs], label=label)
    ax.fill_between(xs, [min(points[x]) for x in xs], [max(points[x]) for x in xs], alpha=0.2, color=line.get_color())


# Twenty lines, each its own colour and marker (ten colours twice, twenty markers): the paper's eleven methods, or a
# panel's configurations, stay distinguishable in print and for colour-blind readers.
STYLE_CYCLE = (cycler(color=list(matplotlib.colormaps["tab10"].colors) * 2)
               + cycler(marker=["o", "s", "^", "D", "v", "P", "X", "*", "<", ">",
                                "h", "p", "d", "8", "H", "1", "2", "3", "4", "+"]))
FACET_OVER, PANEL_LINES, MAX_PANELS = 12, 8, 12


def _legend(ax, title):
    """The legend outside the axes, on the right, so that it never hides a point."""
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title_fontsize=9, frameon=False)


def _figure(title, xlabel, ylabel):
    fig = Figure(figsize=(7.5, 4.0))
    ax = fig.add_subplot()
    ax.set_prop_cycle(STYLE_CYCLE)
    ax.set_title(f"{title}\nmedian over seeds, band: min–max over seeds", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _ylabel(sub):
    metric = sub["headline"].mode().iloc[0]
    scale = " ×100" if scale_of(metric)[0] == 100 else ""
    return f"{metric}{scale}"


def rank_sweep(sub, title):
    # x is config.method.r, so budget-sized runs (whose config r is only the yaml default) are left out; a line is one
    # (model, method, variant less its r), i.e. one target set, plus any other setting that varies (alpha …).
    rank = sub.get("config.method.r", pd.Series(math.nan, index=sub.index))
    budget = sub.get("config.method.budget", pd.Series(None, index=sub.index, dtype=object))
    lora = sub[sub["method"].isin(LORA_METHODS) & rank.notna() & budget.isna() & (sub["targets"] != "")]
    lora = lora.assign(rank=rank[lora.index].astype(float), line=lora["variant"].str.replace(r"^r=\S+\s*", "", regex=True))
    lines = {k: g for k, g in lora.groupby(["model", "method", "line"]) if g["rank"].nunique() >= 2}
    if not lines:
        return None, "needs LoRA runs (no method.budget) with config.method.targets at two or more ranks r"
    fig, ax = _figure(f"Rank sweep: {title}", "LoRA rank r (log2 scale)", _ylabel(sub))
    shown = [len({k[i] for k in lines}) > 1 for i in range(2)]
    for (model, method, line), group in sorted(lines.items(), key=lambda kv: (kv[0][:2], kv[0][2].count(","), kv[0])):
        points = group.groupby("rank")["score"].apply(list).to_dict()
        _band(ax, points, _label([model, _method_label(method), line], shown + [True]))
    ranks = sorted(set(lora["rank"]))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [f"{r:g}" for r in ranks])
    _legend(ax, "adapted weights")
    return fig, None


def param_budget(sub, title):
    known = sub[sub["params.trainable_no_head"].notna() & (sub["params.trainable_no_head"] > 0)]
    if known[["method", "params.trainable_no_head"]].drop_duplicates().shape[0] < 2:
        return None, "needs runs at two or more parameter counts (params.trainable_no_head)"
    fig, ax = _figure(f"Parameter budget: {title}",
                      "trainable parameters without the head (log10 scale)", _ylabel(sub))
    several_models = known["model"].nunique() > 1
    for (model, method), group in sorted(known.groupby(["model", "method"]), key=lambda kv: kv[0]):
        points = group.groupby("params.trainable_no_head")["score"].apply(list).to_dict()
        _band(ax, points, _label([model, _method_label(method)], [several_models, True]))
    ax.set_xscale("log")
    _legend(ax, "method")
    return fig, None


def _curves(sub):
    """(model, method, variant) → {epoch: [scores over seeds]}, for configurations with two or more epochs."""
    curves = {}
    for metric, per_epoch, *key in zip(*(sub[c].tolist() for c in ("headline", "metrics.per_epoch", "model", "method",
                                                                     "variant"))):
        factor = scale_of(metric)[0]
        for epoch in per_epoch if isinstance(per_epoch, list) else []:
            if epoch.get(metric) is not None and epoch.get("epoch") is not None:
                curves.setdefault(tuple(key), {}).setdefault(epoch["epoch"], []).append(epoch[metric] * factor)
    return {k: v for k, v in curves.items() if len(v) >= 2}


def _split_size(variant):
    """('r=8', '{q,v} init=kaiming') for 'r=8 {q,v} init=kaiming': the first setting and the rest."""
    match = re.match(r"(\S+=\S+)\s*(.*)", variant)
    return (match[1], match[2]) if match else ("", variant)


def _size_order(label):
    match = re.match(r"\S+=([-+.\de]+)$", label)
    try:
        return float(match[1]) if match else math.inf, label
    except ValueError:
        return math.inf, label


def _table_order(item):
    """Curves in the tables' order: model, method (FT … LoRA), variant."""
    (model, method, variant), _ = item
    return model, catalog.method_order(method), variant


def _panels(curves):
    """Panel title → {line label: points}: a panel per (model, method); a method with more than PANEL_LINES
    configurations split by its variant less the first setting (the size), lines labelled by that setting, in size
    order; a panel still over PANEL_LINES keeps its best PANEL_LINES lines (by their best median epoch)."""
    several_models = len({k[0] for k in curves}) > 1
    methods = {}
    for (model, method, variant), points in sorted(curves.items(), key=_table_order):
        methods.setdefault(_label([model, _method_label(method)], [several_models, True]), {})[variant] = points
    panels = {}
    for i, (name, lines) in enumerate(methods.items()):
        for variant, points in lines.items():
            size, rest = _split_size(variant) if len(lines) > PANEL_LINES else (variant, "")
            panels.setdefault((i, rest.count(","), f"{name} {rest}".strip()), {})[size or "default"] = points
    out = {}
    for (_, _, name), lines in sorted(panels.items()):
        best = sorted(lines, key=lambda k: -max(median(v) for v in lines[k].values()))[:PANEL_LINES]
        title = name if len(lines) == len(best) else f"{name} (best {len(best)} of {len(lines)})"
        out[title] = {k: lines[k] for k in sorted(best, key=_size_order)}
    return out


def _facets(panels, title, ylabel):
    """One small panel per entry of `panels`, y axis shared, each with its own legend."""
    ncols = min(3, len(panels))
    fig = Figure(figsize=(4.2 * ncols, 2.9 * math.ceil(len(panels) / ncols) + 0.9))
    axes = fig.subplots(math.ceil(len(panels) / ncols), ncols, sharey=True, squeeze=False).ravel()
    fig.suptitle(f"Learning curves: {title}\nmedian over seeds, band: min–max over seeds", fontsize=10)
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    for ax, (name, lines) in zip(axes, panels.items()):
        ax.set_prop_cycle(STYLE_CYCLE)
        for label, points in lines.items():
            _band(ax, points, label)
        only = next(iter(lines)) if len(lines) == 1 else None    # one line: named in the title, no legend
        ax.set_title(name + (f" · {only}" if only not in (None, "default") else ""), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if only is None:
            ax.legend(fontsize=6, loc="best", framealpha=0.7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def _best_panels(panels):
    """At most MAX_PANELS of `panels`: those whose best line reaches the highest median epoch, in their order."""
    best = lambda name: -max(median(v) for points in panels[name].values() for v in points.values())  # noqa: E731
    kept = set(sorted(panels, key=best)[:MAX_PANELS])
    return {name: lines for name, lines in panels.items() if name in kept}


def learning_curves(sub, title):
    curves = _curves(sub)
    if not curves:
        return None, "needs metrics.per_epoch with the headline metric at two or more epochs"
    if len(curves) > FACET_OVER:
        panels = _panels(curves)
        shown = _best_panels(panels)
        more = f" (the best {len(shown)} of {len(panels)} panels)" if len(shown) < len(panels) else ""
        return _facets(shown, f"{title}, {len(curves)} configurations{more}", _ylabel(sub)), None
    fig, ax = _figure(f"Learning curves: {title}", "epoch", _ylabel(sub))
    shown = [len({k[i] for k in curves}) > 1 for i in range(3)]
    for (model, method, variant), points in sorted(curves.items(), key=_table_order):
        _band(ax, points, _label([model, _method_label(method), variant], [shown[0], True, shown[2]]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, "configuration")
    return fig, None


KINDS = (("rank_sweep", "rank sweep", rank_sweep), ("param_budget", "parameter budget", param_budget),
         ("learning_curves", "learning curves", learning_curves))


def make_plots(runs, outdir, tasks, formats=("png", "pdf")):
    """Every plot the runs support, under `outdir`, in each of `formats` (png, pdf); returns (paths relative to
    outdir's parent, skipped sentences). `tasks` (task → facts.task_view) gives the order of the tasks and labels."""
    scores = _scores(runs)
    written, skipped = [], []
    with matplotlib.style.context("default"):
        for task in sorted(set(scores["task"]), key=lambda t: tasks[t]["sort_key"]):
            sub, label = scores[scores["task"] == task], tasks[task]["label"]
            for stem, name, plot in KINDS:
                fig, why = plot(sub, label)
                if fig is None:
                    skipped.append(f"{name} for {label}: {why}")
                    continue
                outdir.mkdir(parents=True, exist_ok=True)
                # fig.tight_layout()'s layout, but the figure keeps no layout engine: tight_layout leaves a placeholder
                # one, and with any engine each savefig draws the figure once more before drawing it (same bytes)
                TightLayoutEngine().execute(fig)
                for ext, meta in ((ext, {"png": PNG_META, "pdf": PDF_META}[ext]) for ext in formats):
                    fig.savefig(outdir / f"{stem}_{task}.{ext}", dpi=120, metadata=meta)
                    written.append(f"{outdir.name}/{stem}_{task}.{ext}")
    return written, skipped
