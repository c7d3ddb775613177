"""The report's training-cost table: what each configuration's training cost, from the records' `cost` (tokens per
second, training FLOPs counted per method: harness/flops.py; MFU on a GPU; the share of padding; evaluation and
decoding rates). It appears only when some completed run carries `cost.train_flops`: reports of records from before
the count existed stay as they were, byte for byte."""
import math

import pandas as pd

from harness.report.tables import GROUP_KEY, completed_runs, fmt_num, frame_table

# (record column, table column, how a median is shown)
COLUMNS = (("cost.tokens_per_second", "tokens/s", lambda v: fmt_num(v, 0)),
           ("cost.flops_per_token", "FLOPs/token", lambda v: si(v)),
           ("vs_full_ft", "× full FT", lambda v: fmt_num(v, 3)),
           ("cost.train_flops", "train FLOPs", lambda v: si(v)),
           ("cost.flops_per_second", "FLOPs/s", lambda v: si(v)),
           ("cost.mfu", "MFU", lambda v: fmt_num(100 * v, 1) + " %"),
           ("cost.padding_share", "padding", lambda v: fmt_num(100 * v, 1) + " %"),
           ("cost.eval_examples_per_second", "eval ex/s", lambda v: fmt_num(v, 1)),
           ("cost.decoded_tokens_per_second", "decoded tok/s", lambda v: fmt_num(v, 1)))
NOTES = ["Medians over the configuration's runs (seeds). FLOPs count a training step's matmuls as executed (forward, "
         "the input gradients that reach a trainable parameter, the weight gradients of the trainable weights only), "
         "on the real tokens (padding excluded): harness/flops.py.",
         "× full FT: FLOPs per token over full fine-tuning's on the same model, task and data; frozen weights need "
         "no weight gradient, so methods that train a fraction f of the matmul weights approach (2 + f)/3.",
         "MFU: FLOPs/s over the GPU's peak at the run's precision (– on CPU). padding: the share of padded "
         "positions in the training batches (trainer.group_by_length lowers it)."]


def si(value: float) -> str:
    """1.23G, 45.6M, 789.0K: three significant figures with an SI prefix."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.3g}"


def cost_rows(runs) -> pd.DataFrame:
    """One row per configuration and task: the median of each cost column over its completed runs, and FLOPs per
    token relative to full fine-tuning's (same model, task, training data)."""
    done = completed_runs(runs)
    present = [c for c, _, _ in COLUMNS if c in done.columns]
    numbers = done[GROUP_KEY].assign(**{c: pd.to_numeric(done[c], errors="coerce") for c in present})
    groups = numbers.groupby(GROUP_KEY, sort=True, dropna=False)
    rows = groups[present].median().reset_index().assign(runs=groups.size().values)
    per_token = rows["cost.flops_per_token"]
    same = ["model", "task", "train_samples"]
    full = rows[rows["method"] == "full_ft"].groupby(same)["cost.flops_per_token"].median()
    rows["vs_full_ft"] = [value / full.get(key, math.nan) for value, key in zip(per_token, zip(*map(rows.get, same)))]
    return rows


def cost_table(runs) -> dict | None:
    """The table (with its CSV of unrounded medians), or None when no completed run counted its FLOPs."""
    if runs.empty or "cost.train_flops" not in runs or completed_runs(runs)["cost.train_flops"].isna().all():
        return None
    rows = cost_rows(runs)
    shown = [(c, name, fmt) for c, name, fmt in COLUMNS if c in rows and rows[c].notna().any()]
    display = rows[["model", "task", "method", "variant", "train_samples", "runs"]].copy()
    for column, name, fmt in shown:
        display[name] = [fmt(v) if pd.notna(v) else "–" for v in rows[column]]
    table = frame_table(display, "Training cost", "cost", NOTES)
    table["csv"] = rows
    return table
