"""The report's figures, one per task and kind, as PNG and PDF:

- rank sweep: headline metric vs LoRA rank r (log2 axis), one line per target set ({q}, {q,v}, {q,k,v,o});
- parameter budget: headline metric vs trainable parameters without the head (log10 axis), one line per method;
- learning curves: headline metric vs epoch (metrics.per_epoch), one line per configuration.

Lines are the median over seeds, bands the min–max over seeds. Figures are built with matplotlib's object API
(`Figure`, Agg canvas) so that pyplot's global state and backend are left alone, under the default style so a user's
matplotlibrc cannot change them, and saved without the dated / versioned metadata so that the bytes are reproducible.
A plot the runs cannot support is skipped with a sentence saying what it needs.
"""
import math
from statistics import median

import matplotlib
import matplotlib.style
import pandas as pd
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness import catalog
from harness.report.tables import completed_runs, scale_of

PNG_META = {"Software": None}
PDF_META = {"CreationDate": None, "ModDate": None}


def _scores(runs):
    """Completed runs with `score`: the best-epoch headline metric on the paper's scale (×100 for accuracies)."""
    done = completed_runs(runs).copy()
    done["score"] = [row.get(f"metrics.best.{row['headline']}", math.nan) * scale_of(row["headline"])[0]
                     for _, row in done.iterrows()]
    return done[done["score"].notna()]


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


# Ten colours, then the same ten with another marker: the paper's eleven methods stay distinguishable.
STYLE_CYCLE = cycler(marker=["o", "s", "^", "D"]) * cycler(color=list(matplotlib.colormaps["tab10"].colors))


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
    lora = sub[sub["method"].str.startswith("lora") & rank.notna() & budget.isna() & (sub["targets"] != "")]
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


def learning_curves(sub, title):
    curves = {}
    for _, run in sub.iterrows():
        metric, factor = run["headline"], scale_of(run["headline"])[0]
        for epoch in run["metrics.per_epoch"] if isinstance(run["metrics.per_epoch"], list) else []:
            if epoch.get(metric) is not None and epoch.get("epoch") is not None:
                key = (run["model"], run["method"], run["variant"])
                curves.setdefault(key, {}).setdefault(epoch["epoch"], []).append(epoch[metric] * factor)
    curves = {k: v for k, v in curves.items() if len(v) >= 2}
    if not curves:
        return None, "needs metrics.per_epoch with the headline metric at two or more epochs"
    fig, ax = _figure(f"Learning curves: {title}", "epoch", _ylabel(sub))
    shown = [len({k[i] for k in curves}) > 1 for i in range(3)]
    for (model, method, variant), points in sorted(curves.items()):
        _band(ax, points, _label([model, _method_label(method), variant], [shown[0], True, shown[2]]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, "configuration")
    return fig, None


KINDS = (("rank_sweep", "rank sweep", rank_sweep), ("param_budget", "parameter budget", param_budget),
         ("learning_curves", "learning curves", learning_curves))


def make_plots(runs, outdir, tasks):
    """Every plot the runs support, under `outdir`; returns (paths relative to outdir's parent, skipped sentences).
    `tasks` (task → facts.task_view) gives the order of the tasks and their labels."""
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
                fig.tight_layout()
                for ext, meta in (("png", PNG_META), ("pdf", PDF_META)):
                    fig.savefig(outdir / f"{stem}_{task}.{ext}", dpi=120, metadata=meta)
                    written.append(f"{outdir.name}/{stem}_{task}.{ext}")
    return written, skipped
