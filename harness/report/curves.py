"""Learning-curve measures for the claim scorecard's convergence claims (harness/report/claims.py, a claim's
`measure`). Each reads the training-loss curve a run records (run.json `metrics.loss_curve`: the mean batch loss over
each window of optimiser steps), pairs runs by seed, and gives A relative to B in % per seed, 100·(A − B)/B: lower is
better for both, so a negative value means A got there faster or lower.

    steps_to_loss   the optimiser steps a run needs to reach the training loss B ends at (B's `train_loss_end`, its
                    mean loss over the last 10 % of batches): the first window at or below it; a run that never
                    reaches it counts its last step (so it is not faster)
    early_loss      the mean training loss over the windows that end by step `steps` (the measure's own key)

Records from before the curve existed have none: such a pair is left out (with no pair, the claim says so).
"""
from __future__ import annotations

import math

import numpy as np

from harness.report import evidence


def _curve(row) -> tuple[np.ndarray, np.ndarray] | None:
    steps, loss = row.get("metrics.loss_curve.step"), row.get("metrics.loss_curve.loss")
    if not isinstance(steps, (list, tuple, np.ndarray)) or len(steps) == 0:
        return None
    return np.asarray(steps, dtype=float), np.asarray(loss, dtype=float)


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def steps_to_loss(row_a, row_b, spec: dict) -> tuple[float, float] | None:
    target, curves = row_b.get("metrics.train_loss_end"), (_curve(row_a), _curve(row_b))
    if not _known(target) or any(c is None for c in curves):
        return None
    firsts = []
    for steps, loss in curves:
        below = np.nonzero(loss <= target)[0]
        firsts.append(float(steps[below[0]] if len(below) else steps[-1]))
    return firsts[0], firsts[1]


def early_loss(row_a, row_b, spec: dict) -> tuple[float, float] | None:
    means = []
    for curve in (_curve(row_a), _curve(row_b)):
        if curve is None or not (curve[0] <= spec["steps"]).any():
            return None
        means.append(float(curve[1][curve[0] <= spec["steps"]].mean()))
    return means[0], means[1]


MEASURES = {"steps_to_loss": steps_to_loss, "early_loss": early_loss}
CURVE = ["metrics.loss_curve.step", "metrics.loss_curve.loss", "metrics.train_loss_end"]   # what the measures read


def compare(runs_a, runs_b, spec: dict) -> dict:
    """A relative to B in % on the measure `spec["name"]`, over the seeds both ran (evidence.seed_evidence: mean,
    Student t interval, sign-flip p)."""
    a, b = evidence.by_seed(runs_a, CURVE), evidence.by_seed(runs_b, CURVE)
    per_seed = []
    for seed in sorted(set(a) & set(b)):
        values = MEASURES[spec["name"]](a[seed], b[seed], spec)
        if values and values[1] > 0:
            per_seed.append(100.0 * (values[0] - values[1]) / values[1])
    return evidence.seed_evidence(per_seed)
