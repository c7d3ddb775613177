"""Paper-style tables from the runs frame (harness/report/records.py): aggregation over seeds, then one grid per table
for the renderers (harness/report/render.py).

The paper's protocol (Table 2 caption): the median over seeds of each run's best-epoch metric. We also keep the
mean, the sample standard deviation (ddof=1, the paper's ±) and n. Only `completed` runs are aggregated; everything
else is listed by sections.not_in_tables, never dropped silently. Which tables there are, their titles and columns, come from
each task's `report` block (harness/report/facts.py); method names and row order from the method yamls.
"""
import math

import numpy as np
import pandas as pd

from harness import catalog, stats
from harness.report import evidence, layouts
from harness.report.frames import first_rows, groups, median, mode, plain, records, records_by

# One row of a table = one configuration; the task is the column.
ROW_KEY = ["task_family", "model", "method", "variant", "train_samples"]
GROUP_KEY = ROW_KEY + ["task"]
CELL_KEY = GROUP_KEY + ["metric"]   # one aggregate row
# The runs-frame columns aggregate() reads besides the metrics (layouts.baseline_label and _interval included).
AGGREGATED = {*GROUP_KEY, "headline", "seed", "flags", "params.trainable_no_head", "eval_samples", "variant_size",
              "targets", "config.trainer.epochs", "config.trainer.max_steps", "metrics.interval.metric",
              "metrics.interval.low", "metrics.interval.high"}


def scale_of(metric):
    """(factor, decimals) for display: NIST and CIDEr are not fractions, the paper prints them as is with 2 decimals;
    every other metric (accuracy, correlations, BLEU, METEOR, ROUGE-L) is shown ×100 with 1 decimal."""
    return (1.0, 2) if metric in ("nist", "cider") else (100.0, 1)


def fmt_params(n):
    """The paper's parameter counts: 0.3M, 22.7M, 25.7K (from 100K up in millions, as it does); a second decimal
    where one would be more than 10% off (0.35M, not 0.3M)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    if n >= 1e5:
        return f"{n / 1e6:.{1 if abs(round(n / 1e6, 1) * 1e6 - n) <= 0.1 * n else 2}f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(int(n))


def fmt_num(value, digits):
    """Fixed decimals, and never '-0.0' (a difference of -0.001 rounds to zero, not to a negative zero)."""
    return f"{round(value, digits) + 0.0:.{digits}f}"


def completed_runs(runs):
    """Completed runs, one per run_id: a config re-run to completion keeps its latest record (by finished_at, path)."""
    done = runs[runs["status"] == "completed"]
    return done.sort_values(["finished_at", "source"], na_position="first").drop_duplicates("run_id", keep="last")


def aggregate(runs):
    """One row per (configuration, task, metric): median, mean, std (ddof=1; empty for n=1), min, max, the 95 % t
    interval of the mean (low, high; empty for n=1) and n over seeds."""
    done = completed_runs(runs)
    metric_cols = sorted(c for c in done.columns if c.startswith("metrics.best."))
    done = done[[c for c in done.columns if c in AGGREGATED or c in metric_cols]]
    columns = {c: done[c].to_numpy() for c in done.columns if c not in metric_cols}
    metrics = {c[len("metrics.best."):]: done[c].astype(float).to_numpy() for c in metric_cols}
    rows = []
    for key, at in groups(done, GROUP_KEY):
        group = {c: values[at] for c, values in columns.items()}
        first = {c: values[0] for c, values in group.items()}
        shared = dict(zip(GROUP_KEY, key), params_no_head=median(group["params.trainable_no_head"]),
                      eval_samples=",".join(sorted(set(group["eval_samples"]))), variant_size=first["variant_size"],
                      targets=first["targets"], baseline=layouts.baseline_label(first) or "")
        headline = mode(group["headline"])
        for metric, values in metrics.items():
            present = ~np.isnan(values[at])
            if present.any():
                rows.append(_cell_stats(shared, metric, metric == headline, values[at][present],
                                        {c: v[present] for c, v in group.items()}))
    columns = GROUP_KEY + ["metric", "headline", "median", "mean", "std", "min", "max", "low", "high", "interval", "n",
                           "seeds", "repeated_seeds", "flagged", "params_no_head", "eval_samples", "variant_size",
                           "targets", "baseline"]
    agg = pd.DataFrame(rows, columns=columns)
    return sort_configs(agg, ["task", "metric"])


def _cell_stats(shared, metric, headline, values, runs):
    """One aggregate row: `values` the cell's scores on `metric` (NaN left out), `runs` its runs' columns with them."""
    seeds = sorted(runs["seed"].tolist())
    interval = _interval(runs, values, metric)
    n = len(values)
    return dict(shared, metric=metric, headline=headline, median=np.median(values), mean=np.mean(values),
                std=np.std(values, ddof=1) if n > 1 else math.nan, min=values.min(), max=values.max(),
                low=interval["low"], high=interval["high"], interval=interval["kind"], n=n,
                seeds=",".join(str(s) for s in seeds), repeated_seeds=len(set(seeds)) < len(seeds),
                flagged=int((runs["flags"] != "").sum()))


def _interval(runs, values, metric) -> dict:
    """A cell's 95 % interval: over seeds (Student t) when it has two or more; for a single run, that run's own
    bootstrap interval over the evaluation examples (metrics.interval) when it recorded one for this metric."""
    if len(values) > 1:
        found = stats.seed_interval(values.tolist())
        return {"low": found["low"], "high": found["high"], "kind": "seeds"}
    run = {c: v[0] for c, v in runs.items()}
    if run.get("metrics.interval.metric") == metric and pd.notna(run.get("metrics.interval.low")):
        return {"low": run["metrics.interval.low"], "high": run["metrics.interval.high"], "kind": "examples"}
    return {"low": math.nan, "high": math.nan, "kind": ""}


def sort_configs(frame, extra=()):
    """Rows in the paper's order: model, its zero-shot row first, method (FT … LoRA), size ascending, fewer adapted
    weights first ({q} before {q,v}), then `extra`."""
    trained = frame["baseline"].fillna("") == "" if "baseline" in frame else True
    frame = frame.assign(_b=trained, _m=frame["method"].map(catalog.method_order),
                         _n=frame["targets"].map(lambda t: len(t.split(",")) if t else 0))
    frame = frame.sort_values(["model", "_b", "_m", "variant_size", "_n", "variant", "train_samples", *extra],
                              na_position="first", kind="mergesort")
    return frame.drop(columns=["_b", "_m", "_n"]).reset_index(drop=True)


def table_specs(agg, tasks):
    """The tables the data supports, laid out by each task's `report` block (`tasks`: task → facts.task_view): tasks
    whose columns are 'tasks' share one table, a column per task (headline metric) in their order, and an Avg (Table 2:
    GLUE); a task whose columns are 'metrics' gets a table of its own (Table 3: E2E; WikiSQL)."""
    shared, specs = {}, []
    for task in sorted(set(agg["task"]), key=lambda t: tasks[t]["sort_key"]):
        view = tasks[task]
        if view["columns"] != "tasks":
            specs += _metrics_table(agg[agg["task"] == task], task, view)
            continue
        if view["table"] not in shared:
            shared[view["table"]] = dict(name=view["table"], title=view["title"], columns=[], avg=True)
            specs.append(shared[view["table"]])
        shared[view["table"]]["columns"].append((view["label"], task, _headline_of(agg, task, view["headline"])))
    return specs


def _metrics_table(sub, task, view):
    """[the spec of a task's own table]: one column per metric it has, in its `metric_labels` order; [] if none. A task
    named otherwise than its dataset and its table (a variant of E2E with Table 3's block) gets its name appended, so
    that the tables of one block do not collide."""
    present = set(sub["metric"])
    labels = view["metric_labels"] or {m: m for m in view["metrics"] or sorted(present)}
    columns = [(label, task, metric) for metric, label in labels.items() if metric in present]
    if not columns:
        return []
    suffix = "" if task in (sub["task_family"].iloc[0], view["table"]) else f"_{task}"
    return [dict(name=view["table"] + suffix, title=view["title"] + suffix, columns=columns, avg=False)]


def _headline_of(agg, task, default):
    """The metric the task's records mark as headline (metrics.headline), else the task's own."""
    marked = agg[(agg["task"] == task) & agg["headline"]]
    return marked["metric"].mode().iloc[0] if not marked.empty else default


def spec_rows(agg, spec):
    """The aggregate rows a table shows (its CSV): the (task, metric) pairs of its columns."""
    wanted = {(task, metric) for _, task, metric in spec["columns"]}
    return agg[[(t, m) in wanted for t, m in zip(agg["task"], agg["metric"])]]


def cell(text, bold=False, std=None, sup=None):
    return {"text": str(text), "bold": bold, "std": std, "sup": sup}


def method_cell(method):
    base, _, sup = catalog.method_label(method).partition("^")
    return cell(base, sup=sup or None)


def _method_or_baseline(conf):
    """The method's label, or what the row is when it is no trained method (an untrained, zero-shot run)."""
    return cell(conf["baseline"]) if conf.get("baseline") else method_cell(conf["method"])


def build_table(agg, spec, done=None):
    """The grid for one spec: one row per configuration, medians ×scale with ± std, Avg, notes; bold by evidence
    (harness/report/evidence.py) when `done` (the completed runs) is given, else the column's best value."""
    sub = plain(spec_rows(agg, spec))
    by_cell, params = first_rows(sub, CELL_KEY), {key: median(sub["params_no_head"].to_numpy()[at])
                                                  for key, at in groups(sub, ROW_KEY)}
    several_sizes = layouts.trained_rows(sub)["train_samples"].nunique() > 1
    header = ["Model", "Method", "Size", "# Params"] + [label for label, _, _ in spec["columns"]]
    header += ["Avg"] if spec["avg"] else []
    values, rows, missing, members = [], [], [], []
    for conf in records(sub.drop_duplicates(ROW_KEY)):
        key = tuple(conf[k] for k in ROW_KEY)
        # zero-shot: nothing trained; a key holding a NaN matches no run
        mine = np.float64(math.nan) if any(pd.isna(v) for v in key) else params[key]
        row = [cell(conf["model"]), _method_or_baseline(conf), layouts.size_cell(conf, several_sizes),
               cell(fmt_params(0 if conf.get("baseline") else mine))]
        row_values = []
        for label, task, metric in spec["columns"]:
            hit = by_cell((*key, task, metric))
            if hit is None:
                missing.append(f"{conf['model']} / {conf['method']} {conf['variant']}".strip()
                               + f": no completed run for {label}")
            row.append(_value_cell(hit, metric))
            row_values.append(None if hit is None else round(hit["median"] * scale_of(metric)[0], scale_of(metric)[1]))
        if spec["avg"]:
            row.append(_avg_cell(row_values))
            row_values.append(round(sum(row_values) / len(row_values), 1) if None not in row_values else None)
        values.append(row_values)
        rows.append(row)
        members.append(conf)
    evidence = _bold(rows, values, spec, members, done)
    return {"name": spec["name"], "title": spec["title"], "header": header, "rows": rows,
            "notes": _notes(sub, spec, evidence), "missing": missing}


def interval_table(agg, spec):
    """The companion of a paper table: per cell the mean over seeds and its 95 % t interval (n ≥ 2), ×scale."""
    sub = plain(spec_rows(agg, spec))
    header = ["Model", "Method", "Size"] + [label for label, _, _ in spec["columns"]]
    rows, by_cell = [], first_rows(sub, CELL_KEY)
    for conf in records(sub.drop_duplicates(ROW_KEY)):
        row = [cell(conf["model"]), _method_or_baseline(conf), layouts.size_cell(conf, False)]
        for _, task, metric in spec["columns"]:
            hit = by_cell((*(conf[k] for k in ROW_KEY), task, metric))
            row.append(cell(_interval_text(hit, metric) if hit is not None else "–"))
        rows.append(row)
    notes = ["Mean over seeds [95 % Student t interval of the mean, n − 1 degrees of freedom]; n = 1: the run's own 95 % "
             "bootstrap interval over the evaluation examples, marked `examples`, where the run recorded one (else the "
             "mean alone).",
             "Each run's own 95 % bootstrap interval over evaluation examples (when it kept its predictions) is in "
             "runs.csv (metrics.interval.low / high)."]
    return {"name": spec["name"] + "_intervals", "title": spec["title"] + ": means and 95 % intervals over seeds",
            "header": header, "rows": rows, "notes": notes, "missing": []}


def _interval_text(h, metric):
    factor, digits = scale_of(metric)
    mean = fmt_num(h["mean"] * factor, digits)
    if pd.isna(h["low"]):
        return f"{mean} (n={h['n']})"
    over = ", examples" if h.get("interval") == "examples" else ""
    return f"{mean} [{fmt_num(h['low'] * factor, digits)}, {fmt_num(h['high'] * factor, digits)}] (n={h['n']}{over})"


def _value_cell(h, metric):
    if h is None:
        return cell("–")
    factor, digits = scale_of(metric)
    std = None if pd.isna(h["std"]) else fmt_num(h["std"] * factor, digits)
    return cell(fmt_num(h["median"] * factor, digits), std=std, sup="!" if h["flagged"] else None)


def _avg_cell(row_values):
    present = [v for v in row_values if v is not None]
    text = fmt_num(sum(present) / len(present), 1)
    return cell(text if len(present) == len(row_values) else f"{text} ({len(present)}/{len(row_values)})")


def _bold(rows, values, spec, members, done, first=4):
    """Per column: the best value, and every value not significantly worse than it on paired evidence; returns the
    kinds of evidence used. Without the runs (or for Avg) only the best value is bold."""
    columns = ["seed", "source", *dict.fromkeys(f"metrics.best.{metric}" for _, _, metric in spec["columns"])]
    by_cell = records_by(done, GROUP_KEY, columns) if done is not None else None
    tested = [spec["columns"][j][1:] if done is not None and j < len(spec["columns"]) else None
              for j in range(len(values[0]) if values else 0)]

    def cell_runs(i, task):   # the completed runs behind one cell: row i's configuration on `task`
        return by_cell((*(members[i][k] for k in ROW_KEY), task))

    marks, used = evidence.bold_marks(values, tested, cell_runs)
    for i, j in marks:
        rows[i][first + j]["bold"] = True
    return used


def _notes(sub, spec, used=()):
    ns = sorted(set(sub["n"]))
    scaled = ", ".join(label for label, _, m in spec["columns"] if scale_of(m)[0] == 100)
    notes = [f"Shown: the median over seeds of each run's best-epoch score ({scaled} ×100), as the paper; ± is the "
             f"standard deviation over seeds (mean and 95 % intervals: the intervals table and the CSV).",
             evidence.describe(set(used)),
             "Seeds per cell: n = " + (str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (per cell in the CSV)") + ".",
             "Training examples: " + ", ".join(sorted(set(layouts.trained_rows(sub)["train_samples"])))
             + " (trainer.max_train_samples).",
             "# Params: trainable parameters without the task head (the paper's convention)."]
    notes += layouts.baseline_notes(sub)
    if "e2e" in set(sub["task_family"]):
        notes.append("The paper's Table 3 gives the mean over seeds for its own runs; the mean is in the CSV.")
    if spec["avg"]:
        notes.append("Avg: mean over the row's tasks; (k/N) marks a row with only k of the N tasks (not bolded).")
    if sub["flagged"].any():
        notes.append("!: at least one run in the cell carries a sanity flag (see Flagged runs).")
    if sub["repeated_seeds"].any():
        notes.append("Warning: some cells hold several runs with the same seed (different hyperparameters?).")
    return notes


def frame_table(frame, title, name, notes=()):
    """Any small DataFrame (scorecard, excluded runs) as a table of plain cells, so the same renderers apply."""
    rows = [[cell("" if pd.isna(v) else v) for v in record] for record in frame.itertuples(index=False)]
    return {"name": name, "title": title, "header": [str(c) for c in frame.columns], "rows": rows,
            "notes": list(notes), "missing": []}
