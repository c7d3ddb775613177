"""Reproduction scorecard: each of our aggregated cells next to the paper's number for the same (task, method, metric).

One row per (our cell, paper model): for a minilm LoRA SST-2 cell that is RoB-base, RoB-large and DeB-XXL (Table 2).
Where the paper has several rows for one model (Adpt^D at 0.3M and 0.9M; LoRA with and without the † setup) we take
the one closest to ours in trainable parameters, then the paper's main setup (no * / † marker).

`comparable` is "yes" only when nothing that changes the number differs (model, training-data size, evaluation subset,
parameter budget, and for runs that record their effective settings the paper's training protocol: protocol_check.py);
`why` lists every difference, including the caveats that do not disqualify a row (fewer seeds, prior-
work numbers, our implementation through another library), so that a reader never has to guess.
"""
import math

import pandas as pd

from harness.report import paper
from harness.report.frames import records
from harness.report.tables import GROUP_KEY, fmt_num, fmt_params, scale_of, sort_configs

COLUMNS = ["task", "metric", "model", "method", "variant", "n", "stat", "ours", "paper_table", "paper_model",
           "paper_method", "paper_params", "paper", "paper_std", "diff", "comparable", "why"]
# Parameter counts within this ratio count as the same budget (the paper rounds to one decimal: 0.3M for 0.29M).
PARAMS_RATIO = 1.5


def _metric_matches(cell, entry):
    # Table 2 prints a single metric per GLUE task (its headline), so our headline cell is its counterpart even if
    # the scorer names it differently (e.g. MNLI matched accuracy).
    if cell["task_family"] == "glue":
        return bool(cell["headline"]) and entry["metric"] != "avg"
    return entry["metric"] == cell["metric"]


def _closeness(cell, entry):
    ours, theirs = cell["params_no_head"], entry["params_count"]
    gap = abs(math.log(ours / theirs)) if ours and theirs and not pd.isna(ours) else 0.0
    return gap, len(entry["notes"]), entry["table"], entry["params_count"] or 0.0


def _pick(cell):
    """The paper entry per paper model that best matches our cell (see the module docstring)."""
    best = {}
    for entry in paper.lookup(cell["task"], cell["method"]):
        if _metric_matches(cell, entry):
            key = entry["model"]
            if key not in best or _closeness(cell, entry) < _closeness(cell, best[key]):
                best[key] = entry
    return [best[k] for k in sorted(best)]


def _differences(cell, entry):
    """(disqualifying reasons, caveats) for comparing our cell with this paper entry."""
    reasons, caveats = [], []
    ours_model = paper.MODEL_NAMES.get(cell["model"])
    if ours_model != entry["model"]:
        reasons.append(f"model differs: ours {cell['model']}, paper {entry['model']}")
    if cell["train_samples"] != "full":
        reasons.append(f"data size: ours a {cell['train_samples']}-example training subset, paper the full set")
    if cell["eval_samples"] != "full":
        reasons.append(f"evaluation on a {cell['eval_samples']}-example subset, paper on the full set")
    ours_p, theirs_p = cell["params_no_head"], entry["params_count"]
    if ours_model == entry["model"] and ours_p and theirs_p and not pd.isna(ours_p) \
            and max(ours_p, theirs_p) / min(ours_p, theirs_p) > PARAMS_RATIO:
        reasons.append(f"params: ours {fmt_params(ours_p)}, paper {entry['params']}")
    seeds = entry["seeds"]
    if seeds and cell["n"] < seeds:
        caveats.append(f"seeds: ours {cell['n']}, paper {seeds}")
    legend = paper.legend()
    caveats += [f"paper row {mark}: {legend.get(mark, mark)}" for mark in entry["notes"]]
    if cell["method"] in paper.SAME_AS:
        caveats.append(f"ours is {cell['method']}, compared with the paper's {entry['method']}")
    return reasons, caveats


def scorecard(agg, tasks, protocol=None):
    """A DataFrame with COLUMNS; `ours`, `paper` and `diff` on the paper's scale (×100 except NIST / CIDEr). `tasks`
    (task → facts.task_view) gives the row order; `protocol` (protocol_check.by_cell: table cell → (reasons,
    caveats)) the protocol check's findings, which count against the paper's row of the same model."""
    rows = []
    for cell in records(agg):
        if (cell["task_family"] == "glue" and not cell["headline"]) or cell.get("baseline"):
            continue   # a zero-shot row is no method of the paper's
        found = (protocol or {}).get(tuple(cell[k] for k in GROUP_KEY), ([], []))
        for entry in _pick(cell):
            # Table 3 reports the mean of 3 seeds; Table 2 the median of 5: compare like with like.
            stat = "mean" if entry["table"] == 3 else "median"
            factor, _ = scale_of(cell["metric"])
            ours = round(cell[stat] * factor, 6)
            reasons, caveats = _differences(cell, entry)
            if paper.MODEL_NAMES.get(cell["model"]) == entry["model"]:
                reasons, caveats = reasons + found[0], caveats + found[1]
            rows.append({"task": cell["task"], "metric": cell["metric"], "model": cell["model"],
                         "method": cell["method"], "variant": cell["variant"], "n": cell["n"], "stat": stat,
                         "ours": ours, "paper_table": entry["table"], "paper_model": entry["model"],
                         "paper_method": entry["method"] + "".join(entry["notes"]), "paper_params": entry["params"],
                         "paper": entry["value"], "paper_std": entry["std"], "diff": round(ours - entry["value"], 6),
                         "comparable": "no" if reasons else "yes", "why": "; ".join(reasons + caveats),
                         "train_samples": cell["train_samples"], "variant_size": cell["variant_size"],
                         "targets": cell["targets"]})
    frame = pd.DataFrame(rows, columns=COLUMNS + ["train_samples", "variant_size", "targets"])
    # Tasks in Table 2's order, then E2E and WikiSQL; their metrics in the paper's column order (metric_labels).
    frame = frame.assign(_t=[tasks[t]["sort_key"] for t in frame["task"]],
                         _k=[_column_of(tasks[t]["metric_labels"], m) for t, m in zip(frame["task"], frame["metric"])])
    frame = sort_configs(frame, ["paper_table", "paper_model"])
    frame = frame.sort_values(["_t", "_k", "metric"], kind="mergesort")
    return frame.drop(columns=["_t", "_k", "train_samples", "variant_size", "targets"]).reset_index(drop=True)


def _column_of(metric_labels, metric):
    return list(metric_labels).index(metric) if metric in metric_labels else -1


def display(card):
    """The scorecard with numbers as the paper prints them (for Markdown / HTML / LaTeX); the CSV keeps `card`."""
    out = card.copy()
    digits = [scale_of(m)[1] for m in card["metric"]]
    out["ours"] = [fmt_num(v, d) for v, d in zip(card["ours"], digits)]
    out["diff"] = [fmt_num(v, d) for v, d in zip(card["diff"], digits)]
    out["paper"] = [f"{v:.{d}f}" for v, d in zip(card["paper"], digits)]
    out["paper_std"] = ["" if pd.isna(s) else f"±{s:.{d}f}" for s, d in zip(card["paper_std"], digits)]
    return out
