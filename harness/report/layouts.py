"""The LoRA paper's ablation and benchmark layouts (Hu et al. 2022) as report tables, in the shape the renderers take
(harness/report/render.py: {name, title, header, rows of cells, notes, missing}, plus `csv` and `tex_columns`):

- Table 6 (rank sweep): rows = the weight types LoRA adapts, columns = its rank r;
- Table 5 (one parameter budget spread over weight types): per budget, the r it picked and the score per target set;
- Table 1 (inference latency): rows = variants, columns = batch × sequence length, from `harness-bench latency` JSON;

and the name of a baseline row: a run that trained nothing reads "SmolLM2 (zero-shot)", never as a trained
configuration.
Score cells are the median over seeds of each run's best-epoch headline metric ×100 ± the standard deviation over
seeds, as in Table 2 (harness/report/tables.py, whose aggregate frame the score layouts read).
"""
import glob
import json
import math
import re
from pathlib import Path

import pandas as pd

from harness import catalog
from harness.bench.latency import LABELS as LATENCY_LABELS
# tables as a module, its names looked up at call time: tables may import this module (baseline_label) in turn
from harness.report import tables
from harness.report.frames import first_rows, records
from harness.report.records import TARGET_ORDER, is_zero_shot

# LoRA and its family (methods/lora_family.py): the methods sized by a rank r on weight types
LORA_METHODS = ("lora", "lora_peft", "rslora", "lora_plus", "pissa", "dora")
# What a variant label puts on the layouts' axes: its size (r=8, budget=36864) and its targets ({q,v}).
SIZE_AND_TARGETS = r"^(?:r|budget)=\S+\s*|\{[^}]*\}\s*"
# One table per task and per (model, method, training size, other settings such as init=kaiming).
TABLE_KEY = ["model", "method", "train_samples", "rest"]
RUN_KEY = ["task", "model", "method", "variant", "train_samples"]


def baseline_label(row):
    """'SmolLM2 (zero-shot)' for a run that trained nothing (records.is_zero_shot: the model as loaded, evaluated; its
    row comes first in its table), None for a run that trained. `row`: a runs-frame row (flattened columns such as
    config.trainer.epochs) or a dict of them."""
    return f"{catalog.model_label(str(row.get('model')))} (zero-shot)" if is_zero_shot(row) else None


def trained_rows(frame):
    """The rows of an aggregate (or runs) frame that are no baseline: runs that trained."""
    return frame[frame["baseline"].fillna("") == ""] if "baseline" in frame else frame


def size_cell(conf, train_size: bool):
    """What sized a row's training (its variant, and its training-set size when the table has several); '–' for a
    zero-shot row, which trained nothing."""
    size = [conf["variant"]] + ([f"{conf['train_samples']} train"] if train_size else [])
    return tables.cell("–" if conf.get("baseline") else " · ".join(p for p in size if p) or "–")


def baseline_notes(sub):
    """A table's note on each zero-shot row: what it is, and the method its runs went through (at initialisation)."""
    rows = sub[sub["baseline"].fillna("") != ""] if "baseline" in sub else sub.iloc[:0]
    return [f"{label}: the model as loaded, evaluated without training (trainer.epochs=0; method "
            f"{', '.join(sorted(set(group['method'])))} at its initialisation); # Params 0: nothing trained."
            for label, group in rows.groupby("baseline", sort=True)]


def _braces(targets):
    return "{" + targets + "}"


def _target_order(targets):
    """Target sets as Tables 5 and 6 order them: fewer weights first, then q, k, v, o, mlp."""
    rank = lambda t: TARGET_ORDER.index(t) if t in TARGET_ORDER else len(TARGET_ORDER)  # noqa: E731
    return sorted(set(targets), key=lambda ts: (ts.count(","), [rank(t) for t in ts.split(",")], ts))


def _slug(value):
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-") or "default"


def lora_configs(agg, budgeted):
    """Headline cells of LoRA configurations with targets, sized by method.budget or by r (`budgeted`), baselines left
    out; `rest` is what the variant says besides size and targets (init=kaiming …)."""
    sub = agg[agg["headline"].astype(bool) & agg["method"].isin(LORA_METHODS) & (agg["targets"] != "")]
    if "baseline" in sub:
        sub = sub[~sub["baseline"].fillna("").astype(bool)]
    sub = sub[sub["variant"].str.startswith("budget=") == budgeted]
    return sub.assign(rest=sub["variant"].str.replace(SIZE_AND_TARGETS, "", regex=True).str.strip())


def _groups(sub, tasks, stem):
    """(name, detail, task label, cells) per table; a name gets the parts that tell one task's tables apart."""
    out = []
    order = lambda t: tasks[t]["sort_key"] if tasks and t in tasks else (0, t)  # noqa: E731
    for task in sorted(set(sub["task"]), key=order):
        by_task = sub[sub["task"] == task]
        varying = [k for k in TABLE_KEY if by_task[k].nunique() > 1]
        for key, group in by_task.groupby(TABLE_KEY, sort=True):
            parts = dict(zip(TABLE_KEY, key))
            name = "_".join([stem, task] + [_slug(parts[k]) for k in varying])
            method = "" if parts["method"] == "lora" else catalog.method_label(parts["method"]).replace("^", " ")
            detail = ", ".join(p for p in (parts["model"], method, f"{parts['train_samples']} training examples",
                                           parts["rest"]) if p)
            out.append((name, detail, tasks[task]["label"] if tasks and task in tasks else task, group))
    return out


def _score_cell(hit):
    """Median ×scale ± std of one aggregate row (a frame's first row, or the row as frames.first_rows gives it), '!'
    when a run in it is flagged; '–' when there is none."""
    if hit is None or isinstance(hit, pd.DataFrame) and hit.empty:
        return tables.cell("–")
    h = hit.iloc[0] if isinstance(hit, pd.DataFrame) else hit
    factor, digits = tables.scale_of(h["metric"])
    std = None if pd.isna(h["std"]) else tables.fmt_num(h["std"] * factor, digits)
    return tables.cell(tables.fmt_num(h["median"] * factor, digits), std=std, sup="!" if h["flagged"] else None)


def _score_notes(group, axes):
    metric = group["metric"].iloc[0]
    ns = sorted(set(group["n"]))
    scaled = " ×100" if tables.scale_of(metric)[0] == 100 else ""
    seeds = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    notes = [f"Median over seeds of each run's best-epoch {metric}{scaled}; ± is the standard deviation over seeds; "
             f"seeds per cell: n = {seeds}.", axes,
             "Trainable parameters without the head, per cell: params_no_head in the CSV."]
    if group["flagged"].any():
        notes.append("!: at least one run in the cell carries a sanity flag (see Flagged runs).")
    return notes


def _table(name, title, header, rows, notes, missing, csv, tex_columns):
    return {"name": name, "title": title, "header": header, "rows": rows, "notes": notes, "missing": missing,
            "csv": csv.drop(columns=["rest"], errors="ignore"), "tex_columns": tex_columns}


def table6_rank(agg, tasks=None):
    """Table 6's layout (validation score by LoRA rank r and weight type): one table per task and (model, method,
    training size, other settings) whose LoRA runs without method.budget cover a target set at two or more ranks.
    `agg`: tables.aggregate's frame; `tasks`: task → facts.task_view (labels and order), optional."""
    out = []
    if agg.empty:
        return out
    for name, detail, label, group in _groups(lora_configs(agg, budgeted=False), tasks, "table6_rank"):
        if group.groupby("targets")["variant_size"].nunique().max() < 2:
            continue
        ranks = sorted(set(group["variant_size"].dropna()))
        rows, missing, at = [], [], first_rows(group, ["targets", "variant_size"])
        for targets in _target_order(group["targets"]):
            row = [tables.cell(_braces(targets))]
            for r in ranks:
                row.append(_score_cell(at((targets, r))))
                missing += [] if at((targets, r)) else [f"{detail}: {_braces(targets)} at r = {r:g}: no completed run"]
            rows.append(row)
        axes = ("Rows: the weights LoRA adapts (q, k, v, o: the attention projections Wq, Wk, Wv, Wo); columns: its "
                "rank r. The paper's Table 6 is this layout for GPT-3 175B on WikiSQL and MultiNLI.")
        out.append(_table(name, f"Table 6 layout: {label} by LoRA rank r and weight type ({detail})",
                          ["Weight type"] + [f"r = {r:g}" for r in ranks], rows, _score_notes(group, axes), missing,
                          group, "l" + "r" * len(ranks)))
    return out


def trained_ranks(runs):
    """(task, model, method, variant, train_samples) → the ranks its completed runs trained with: method_config.r in
    records written before the budget knob returned a sized config (their config.method.r is the yaml default), else
    config.method.r (the budget's pick in newer records)."""
    done = tables.completed_runs(runs)
    if done.empty:
        return {}
    nothing = pd.Series(math.nan, index=done.index)
    older, newer = done.get("method_config.r", nothing), done.get("config.method.r", nothing)
    ranks = older.where(older.notna(), newer)
    return {key: sorted(set(r.dropna())) for key, r in ranks.groupby([done[k] for k in RUN_KEY])}


def table5_targets(agg, runs, tasks=None):
    """Table 5's layout (one budget of trainable parameters spread over weight types): per budget a row with the r the
    budget picked per target set and a row of scores; one table per task and (model, method, training size, other
    settings) whose LoRA runs with method.budget cover two or more target sets."""
    if agg.empty:
        return []
    ranks, out = trained_ranks(runs), []
    for name, detail, label, group in _groups(lora_configs(agg, budgeted=True), tasks, "table5_targets"):
        columns = _target_order(group["targets"])
        if len(columns) < 2:
            continue
        group = group.assign(trained_r=["/".join(f"{r:g}" for r in ranks.get(tuple(g[k] for k in RUN_KEY), []))
                                        for g in records(group, RUN_KEY)])
        rows, missing = [], []
        for budget, at in group.groupby("variant_size", sort=True):
            hits = [at[at["targets"] == t] for t in columns]
            rows.append([tables.cell(tables.fmt_params(budget)), tables.cell("rank r")]
                        + [tables.cell((h["trained_r"].iloc[0] or "?") if len(h) else "–") for h in hits])
            rows.append([tables.cell(""), tables.cell(label)] + [_score_cell(h) for h in hits])
            missing += [f"{detail}: {_braces(t)} at budget {tables.fmt_params(budget)}: no completed run"
                        for t, h in zip(columns, hits) if h.empty]
        axes = ("Columns: the weights LoRA adapts under one budget of trainable parameters (method.budget); the budget "
                "picks r (row 'rank r'). The paper's Table 5 is this layout for GPT-3 175B at 18M parameters.")
        out.append(_table(name, f"Table 5 layout: {label}, one parameter budget over weight types ({detail})",
                          ["# Trainable parameters", ""] + [_braces(t) for t in columns], rows,
                          _score_notes(group, axes), missing, group, "ll" + "r" * len(columns)))
    return out


def layout_tables(agg, runs, tasks=None):
    """Every Table 6 and Table 5 layout the runs support (harness-report's extra tables beside Table 2)."""
    return table6_rank(agg, tasks) + table5_targets(agg, runs, tasks)


def _latency_cell(row, base):
    """'22.67 ±1.56 (+0.9%)': the median, its std, and (not for the base model) the overhead over the base model."""
    if row is None:
        return tables.cell("–")
    latency = tables.cell(f"{row['latency_ms_median']:.2f}", std=f"{row['latency_ms_std']:.2f}")
    return latency if base else dict(latency, suffix=f"({round(row['overhead_pct'], 1) + 0.0:+.1f}%)")


def _variant_name(variant):
    return LATENCY_LABELS.get(variant) or catalog.method_label(variant).replace("^", "")


def _latency_notes(meta, rows, grid, variants):
    at = {(r["variant"], r["batch"], r["seq"]): r for r in rows}
    paired = "; ".join(_variant_name(v) + " " + " / ".join(f"{at[(v, *c)]['overhead_pct_paired']:+.1f}"
                                                           for c in grid if (v, *c) in at)
                       for v in variants if v != "base")
    prefix = sorted({(r["variant"], r["prefix_positions"]) for r in rows if r.get("prefix_positions")})
    notes = [f"Median of {meta.get('trials')} timed forward passes ± their standard deviation, in ms; columns: batch "
             "size × sequence length; in parentheses, the median's overhead over the base model's in the same column "
             "(the paper's Table 1 reports it for GPT-2 medium). |Θ|: trainable parameters without the head.",
             f"Paired overhead (median over rounds of variant / base time in the same round, %, per column): {paired}."]
    if prefix:
        notes.append("Positions the prefix takes from the sequence: "
                     + ", ".join(f"{_variant_name(v)} {n}" for v, n in prefix) + ".")
    notes.append(f"{meta.get('device_name')}, torch {meta.get('torch')}, {meta.get('threads')} threads, "
                 f"{meta.get('warmup')} warm-up passes per variant and column; variants timed round-robin in one "
                 f"process, in a new random order each round. Command: {meta.get('command')}")
    if meta.get("skipped"):
        notes.append("Skipped: " + "; ".join(f"{s['variant']} ({s['reason']})" for s in meta["skipped"]) + ".")
    return notes


def table1_latency(bench_json, name=None):
    """Table 1's layout (inference latency of one forward pass and the overhead over the base model) from the JSON
    `harness-bench latency` writes ({"meta": …, "rows": [{variant, batch, seq, params, latency_ms_median, …}]}):
    rows = variants, columns = batch × sequence length, cells "median ±std (+x.x%)" in ms."""
    meta, rows = bench_json["meta"], bench_json["rows"]
    grid = list(dict.fromkeys((r["batch"], r["seq"]) for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    at = {(r["variant"], r["batch"], r["seq"]): r for r in rows}
    body = []
    for variant in variants:
        first = next(r for r in rows if r["variant"] == variant)
        label = tables.cell(LATENCY_LABELS[variant]) if variant in LATENCY_LABELS else tables.method_cell(variant)
        body.append([label, tables.cell(f"{first['params']:,}")]
                    + [_latency_cell(at.get((variant, *c)), variant == "base") for c in grid])
    device = str(meta.get("device", "")).split(":")[0]
    csv = pd.DataFrame([{k: v for k, v in r.items() if k != "times_ms"} for r in rows])
    return _table(name or f"table1_latency_{meta.get('model')}_{device}",
                  f"Table 1 layout: inference latency of one forward pass (ms), {meta.get('model')} on "
                  f"{meta.get('device_name')}", ["Variant", "|Θ|"] + [f"{b} × {s}" for b, s in grid], body,
                  _latency_notes(meta, rows, grid, variants), [], csv, "lr" + "r" * len(grid))


def _is_latency_json(path):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    rows = data.get("rows") if isinstance(data, dict) and "meta" in data else None
    return isinstance(rows, list) and bool(rows) and all(isinstance(r, dict) and "latency_ms_median" in r
                                                          for r in rows)


def latency_files(paths):
    """The `harness-bench latency` JSON files among harness-report's PATH arguments: a .json file, given or matched by
    a glob, whose top level has "meta" and "rows" with "latency_ms_median"; in a folder, such latency*.json files."""
    found = set()
    for raw in paths:
        matches = sorted(glob.glob(raw, recursive=True)) if any(c in raw for c in "*?[") else [raw]
        for match in map(Path, matches):
            candidates = sorted(match.rglob("latency*.json")) if match.is_dir() else [match]
            found.update(p for p in candidates if p.suffix == ".json" and p.is_file() and _is_latency_json(p))
    return sorted(found)


def latency_tables(files):
    """Table 1 for each latency JSON file, named after it (latency_minilm_cpu.json → table1_latency_minilm_cpu)."""
    out = []
    for path in map(Path, files):
        name = "table1_" + (path.stem if path.stem.startswith("latency") else f"latency_{path.stem}")
        out.append(table1_latency(json.loads(path.read_text(encoding="utf-8")), name=name))
    return out
