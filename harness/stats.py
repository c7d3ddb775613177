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
from functools import lru_cache
from typing import Callable

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def _blocks(draw: Callable, n: int, resamples: int, rows: int = 1):
    """`resamples` draws of n values each, `rows` at a time (a block: rows × n). numpy's generators give the same
    values whether drawn row by row or as one block (the bit generator keeps any spare bits in its state)."""
    for start in range(0, resamples, rows):
        yield draw((min(rows, resamples - start), n))


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, resamples: int = RESAMPLES,
                       level: float = LEVEL, seed: int = 0) -> dict:
    """{low, high, level, resamples, seed, method}: the percentile interval of `statistic(indices)` over resamples of
    range(n) with replacement."""
    rng = np.random.default_rng(seed)
    values = [statistic(idx) for block in _blocks(lambda shape: rng.integers(0, n, shape), n, resamples) for idx in block]
    return _percentile(np.array(values, dtype=float), level, resamples, seed)


def _percentile(values: np.ndarray, level: float, resamples: int, seed: int) -> dict:
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return {"low": float(low), "high": float(high), "level": level, "resamples": resamples, "seed": seed,
            "method": "percentile bootstrap over evaluation examples"}


def paired_difference(metric: Callable[[np.ndarray, np.ndarray], float], preds_a: list[np.ndarray],
                      preds_b: list[np.ndarray], labels: np.ndarray, resamples: int = RESAMPLES,
                      level: float = LEVEL, seed: int = 0, confusion: Callable | None = None) -> dict:
    """A − B where `preds_a[s]`, `preds_b[s]` are the two methods' predictions under seed s on the same examples
    (`labels`): the difference of their seed-mean metric, its paired bootstrap interval (examples resampled, the same
    resample for every seed and both methods) and the two-sided approximate-randomization p-value. `confusion`: the
    same metric from confusion counts (harness/metrics/glue.py CONFUSION), which gives the same numbers, bit for bit,
    from a few matrix products instead of a metric call per resample, seed and method (see Counts)."""
    a, b, labels = np.stack(preds_a), np.stack(preds_b), np.asarray(labels)

    def diff(pa: np.ndarray, pb: np.ndarray, idx: np.ndarray) -> float:
        return float(np.mean([metric(pa[s][idx], labels[idx]) - metric(pb[s][idx], labels[idx])
                              for s in range(len(pa))]))

    n = labels.shape[0]
    everything = np.arange(n)
    observed = diff(a, b, everything)
    if confusion is None:
        interval = bootstrap_interval(lambda idx: diff(a, b, idx), n, resamples, level, seed)
        rng = np.random.default_rng(seed + 1)
        swaps = (rng.random(n) < 0.5 for _ in range(resamples))   # per example, the same swap under every seed
        swapped = [diff(np.where(s, b, a), np.where(s, a, b), everything) for s in swaps]
    else:
        counts = Counts(confusion, a, b, labels)
        interval = _percentile(counts.bootstrap(_resampled(_weights, n, resamples, seed)), level, resamples, seed)
        swapped = counts.swapped(_resampled(_swaps, n, resamples, seed + 1))
    extreme = int(np.sum(np.abs(np.asarray(swapped)) >= abs(observed) - 1e-12))
    return {"diff": observed, "low": interval["low"], "high": interval["high"], "level": level,
            "p_value": (extreme + 1) / (resamples + 1), "seeds": len(a), "examples": n, "resamples": resamples,
            "test": "approximate randomization (paired, per example), paired bootstrap interval"}


def _weights(n: int, resamples: int, seed: int):
    """The bootstrap's resamples (the draws of bootstrap_interval) as blocks of multiplicities: entry (r, i) is how
    often example i is drawn in resample r."""
    rng = np.random.default_rng(seed)
    for idx in _blocks(lambda shape: rng.integers(0, n, shape), n, resamples, max(1, Counts.CHUNK // n)):
        m = idx.shape[0]
        yield np.bincount((idx + n * np.arange(m)[:, None]).ravel(), minlength=m * n).reshape(m, n).astype(float)


def _swaps(n: int, resamples: int, seed: int):
    """The randomization test's swap masks (the slow path's draws) as blocks of 0.0 / 1.0."""
    rng = np.random.default_rng(seed)
    for swap in _blocks(lambda shape: rng.random(shape) < 0.5, n, resamples, max(1, Counts.CHUNK // n)):
        yield swap.astype(float)


def _resampled(make: Callable, n: int, resamples: int, seed: int):
    """`make`'s blocks for (n, resamples, seed). They depend on nothing else, so a report that compares hundreds of
    cells on the same evaluation set draws them once: kept while they are small (≤ 2^22 entries, 32 MB)."""
    return _kept(make, n, resamples, seed) if n * resamples <= 2**22 else make(n, resamples, seed)


@lru_cache(maxsize=4)
def _kept(make: Callable, n: int, resamples: int, seed: int) -> tuple:
    return tuple(make(n, resamples, seed))


class Counts:
    """The paired tests of a metric that is a function of the confusion counts (accuracy, F1, Matthews), computed from
    them. A resample's counts are sums of integers, which float64 adds exactly in any order, and the metric is then
    computed from them with the same operations as on the examples, so every number equals the per-resample loop's."""

    CHUNK = 2**22   # resample × example entries per matrix product

    def __init__(self, confusion: Callable, a: np.ndarray, b: np.ndarray, labels: np.ndarray):
        self.confusion, self.classes = confusion, np.union1d(np.union1d(a, b), labels)
        k = len(self.classes)
        codes = [np.searchsorted(self.classes, p) * k + np.searchsorted(self.classes, labels) for p in (a, b)]
        # one-hot of (prediction, label) per example, for each method, seed and (prediction, label) pair:
        # (examples, 2 · seeds · k·k), so that one matrix product counts every method and seed at once
        onehot = np.stack(codes)[..., None] == np.arange(k * k)            # (2, seeds, examples, k·k)
        self.shape = onehot.shape[1], k * k
        self.onehot = onehot.transpose(2, 0, 1, 3).reshape(onehot.shape[2], -1).astype(float)

    def _diffs(self, counts: np.ndarray) -> np.ndarray:
        """(resamples, 2 · seeds · k·k) counts of A then B → per resample the seed-mean of metric(A) − metric(B)."""
        k = len(self.classes)
        counts = counts.reshape(len(counts), 2, *self.shape)
        counts_a, counts_b = counts[:, 0], counts[:, 1]
        ma = self.confusion(counts_a.reshape(*counts_a.shape[:-1], k, k), self.classes)
        mb = self.confusion(counts_b.reshape(*counts_b.shape[:-1], k, k), self.classes)
        return np.mean(ma - mb, axis=1)

    def bootstrap(self, blocks) -> np.ndarray:
        """Per resample (blocks of multiplicities, `_weights`), the seed-mean difference: counts = weights @ one-hot."""
        out = []
        for weights in blocks:
            out.append(self._diffs(weights @ self.onehot))
        return np.concatenate(out)

    def swapped(self, swaps) -> np.ndarray:
        """Per swap mask (True: the example's A and B predictions exchanged), the seed-mean difference over all
        examples: A's counts gain B's one-hot where swapped and lose its own, and B's the reverse."""
        out, half = [], self.onehot.shape[1] // 2
        change = self.onehot[:, half:] - self.onehot[:, :half]      # B's one-hot less A's, per seed
        base = self.onehot.sum(axis=0)
        for swap in swaps:
            moved = swap @ change
            out.append(self._diffs(base + np.concatenate([moved, -moved], axis=1)))
        return np.concatenate(out)


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
