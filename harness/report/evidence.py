"""Paired evidence between two table cells (two configurations on one task), for bold marking and the claim scorecard.

The strongest evidence available is used, and named in every table and claim row that rests on it:

    examples   every run of both cells kept its best epoch's per-example predictions (predictions.jsonl.gz beside its
               run.json) for the same examples: the difference of the seed-mean headline metric over the seeds both
               cells ran, its paired bootstrap interval and the approximate-randomization p-value (harness/stats.py)
    seeds      no predictions, but ≥ 2 seeds in common: the per-seed differences, their mean with a Student t interval
               and the exact sign-flip permutation p-value (with 3 seeds the smallest possible p is 0.25)
    one seed   a single seed in common: the difference, with no interval and no test
    unpaired   no seed in common: nothing is compared

Values are on the scorer's scale (0.912, not 91.2).
"""
from __future__ import annotations

import gzip
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness import stats
from harness.metrics import glue as glue_metrics

PREDICTIONS = "predictions.jsonl.gz"
LEVEL = 0.05   # a cell is "significantly worse" than the column's best at p < LEVEL


@lru_cache(maxsize=4096)
def _rows(source: str) -> tuple | None:
    """(ids, labels, predictions) of the run whose run.json is `source`, or None when it kept no predictions."""
    path = Path(source).parent / PREDICTIONS
    if not path.is_file():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as handle:   # one JSON array: one parse, not one per line
        rows = json.loads("[" + ",".join(line for line in handle.read().splitlines() if line.strip()) + "]")
    return (tuple(r["id"] for r in rows), np.array([r["label"] for r in rows]),
            np.array([r["prediction"] for r in rows]))


def by_seed(runs) -> dict:
    """seed → the run's row (the latest record of a seed if a cell holds several)."""
    return {row["seed"]: row for _, row in runs.iterrows()}


def compare(runs_a, runs_b, metric: str, seed: int = 0) -> dict:
    """A − B on the headline `metric` over the seeds both ran: {diff, low, high, p_value, seeds, examples, evidence}."""
    a, b = by_seed(runs_a), by_seed(runs_b)
    shared = sorted(set(a) & set(b))
    column = f"metrics.best.{metric}"
    paired = _paired_predictions([a[s]["source"] for s in shared], [b[s]["source"] for s in shared])
    if paired and metric in glue_metrics.FAST:
        found = seed_evidence([float(a[s][column]) - float(b[s][column]) for s in shared], interval=False)
        labels, preds_a, preds_b = paired
        result = stats.paired_difference(glue_metrics.FAST[metric], preds_a, preds_b, labels, seed=seed,
                                         confusion=glue_metrics.CONFUSION.get(metric))
        found.update({k: result[k] for k in ("diff", "low", "high", "p_value", "examples")}, evidence="examples")
        return found
    return seed_evidence([float(a[s][column]) - float(b[s][column]) for s in shared])


def seed_evidence(per_seed: list[float], interval: bool = True) -> dict:
    """A − B from its per-seed differences: their mean, and with two or more seeds the Student t interval and the
    exact sign-flip p (the `seeds` evidence; `interval=False` leaves them to a stronger test)."""
    found = {"diff": float(np.mean(per_seed)) if per_seed else math.nan, "low": math.nan, "high": math.nan,
             "p_value": math.nan, "seeds": len(per_seed), "examples": None,
             "evidence": "unpaired" if not per_seed else "one seed" if len(per_seed) == 1 else "seeds"}
    if interval and len(per_seed) > 1:
        bounds = stats.seed_interval(per_seed)
        found.update(low=bounds["low"], high=bounds["high"], p_value=stats.sign_flip_p(per_seed))
    return found


def _paired_predictions(sources_a: list[str], sources_b: list[str]):
    """(labels, [A's predictions per seed], [B's per seed]) when every run kept predictions on the same examples."""
    loaded = [_rows(str(s)) for s in sources_a + sources_b]
    if not loaded or any(r is None for r in loaded) or len({r[0] for r in loaded}) != 1:
        return None
    if any(not np.array_equal(r[1], loaded[0][1]) for r in loaded):
        return None
    half = len(sources_a)
    return loaded[0][1], [r[2] for r in loaded[:half]], [r[2] for r in loaded[half:]]


def not_worse(result: dict) -> bool:
    """Not significantly worse than the cell it was compared with (no test possible counts as not worse)."""
    return not (result["p_value"] < LEVEL and result["diff"] < 0)


def describe(evidence: set[str]) -> str:
    """The sentence a table's notes carry about the test its bold marks rest on."""
    parts = {"examples": "a paired approximate-randomization test over evaluation examples (seeds paired, 1000 "
                         "resamples)",
             "seeds": "an exact paired sign-flip permutation test over seeds (with n seeds the smallest p is 2/2^n)",
             "one seed": "no test (one seed, no per-example predictions)",
             "unpaired": "no test (no seed in common)"}
    used = [parts[e] for e in ("examples", "seeds") if e in evidence]
    untested = [parts[e] for e in ("one seed", "unpaired") if e in evidence]
    text = "Bold: the best value in its column"
    if used:
        text += f" and every value not significantly worse than it (two-sided p < {LEVEL:g}) by " + "; or ".join(used)
    if untested:
        text += "; values that could not be tested are bold too: " + "; ".join(untested)
    return text + "."
