"""Uncertainty, computed the same way everywhere (run records, report tables, the claim scorecard).

    bootstrap_interval     percentile bootstrap over evaluation examples (Efron & Tibshirani 1993, ch. 13): the
                           examples are resampled with replacement and the task's own metric recomputed on each resample
    paired_difference      method A − method B on the same examples and the same seeds: the paired bootstrap interval
                           of the difference (Koehn 2004) and the p-value of the approximate randomization test (Noreen
                           1989; Riezler & Maxwell 2005): under "no difference" A's and B's predictions on an example are
                           exchangeable, so each resample swaps them example by example
    seed_interval          across seeds: mean, median, std and a t interval of the mean (Student, ν = n − 1)
    sign_flip_p            a paired exact permutation test over seeds (every ±1 assignment of the per-seed differences):
                           what remains when no per-example predictions exist

Everything is seeded (`seed`, default 0) so the same inputs give the same numbers.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, resamples: int = RESAMPLES,
                       level: float = LEVEL, seed: int = 0) -> dict:
    """{low, high, level, resamples, seed, method}: the percentile interval of `statistic(indices)` over resamples of
    range(n) with replacement."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return {"low": float(low), "high": float(high), "level": level, "resamples": resamples, "seed": seed,
            "method": "percentile bootstrap over evaluation examples"}


def paired_difference(metric: Callable[[np.ndarray, np.ndarray], float], preds_a: list[np.ndarray],
                      preds_b: list[np.ndarray], labels: np.ndarray, resamples: int = RESAMPLES,
                      level: float = LEVEL, seed: int = 0) -> dict:
    """A − B where `preds_a[s]`, `preds_b[s]` are the two methods' predictions under seed s on the same examples
    (`labels`): the difference of their seed-mean metric, its paired bootstrap interval (examples resampled, the same
    resample for every seed and both methods) and the two-sided approximate-randomization p-value."""
    a, b, labels = np.stack(preds_a), np.stack(preds_b), np.asarray(labels)

    def diff(pa: np.ndarray, pb: np.ndarray, idx: np.ndarray) -> float:
        return float(np.mean([metric(pa[s][idx], labels[idx]) - metric(pb[s][idx], labels[idx])
                              for s in range(len(pa))]))

    n = labels.shape[0]
    everything = np.arange(n)
    observed = diff(a, b, everything)
    interval = bootstrap_interval(lambda idx: diff(a, b, idx), n, resamples, level, seed)
    rng = np.random.default_rng(seed + 1)
    extreme = 0
    for _ in range(resamples):
        swap = rng.random(n) < 0.5            # per example, the same swap under every seed
        sa, sb = np.where(swap, b, a), np.where(swap, a, b)
        extreme += abs(diff(sa, sb, everything)) >= abs(observed) - 1e-12
    return {"diff": observed, "low": interval["low"], "high": interval["high"], "level": level,
            "p_value": (extreme + 1) / (resamples + 1), "seeds": len(a), "examples": n, "resamples": resamples,
            "test": "approximate randomization (paired, per example), paired bootstrap interval"}


def seed_interval(values, level: float = LEVEL) -> dict:
    """Across seeds: {n, mean, median, std (ddof=1), low, high}; the interval is mean ± t·std/√n (none for n < 2)."""
    from scipy import stats as sp

    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(values)
    out = {"n": n, "mean": float(values.mean()) if n else math.nan, "median": float(np.median(values)) if n else math.nan,
           "std": float(values.std(ddof=1)) if n > 1 else math.nan, "low": math.nan, "high": math.nan}
    if n > 1:
        half = sp.t.ppf(1 - (1 - level) / 2, n - 1) * out["std"] / math.sqrt(n)
        out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out


def sign_flip_p(differences) -> float:
    """Two-sided exact paired permutation p-value over seeds: the share of the 2^n sign assignments whose mean
    difference is at least as far from 0 as the observed one (n ≤ 16)."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return math.nan
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1, -1), repeat=len(d))))
    return float(np.mean(np.abs((signs * d).mean(axis=1)) >= observed - 1e-12))
