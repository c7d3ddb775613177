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
    (`labels`; a prediction is a value or, for a corpus metric, a row of the example's sufficient statistics, such as
    its BLEU n-gram counts): the difference of their seed-mean metric, its paired bootstrap interval (examples
    resampled, the same resample for every seed and both methods) and the two-sided approximate-randomization p-value
    (the same swap mask as for values: a row swaps whole). `confusion`: the
    same metric from confusion counts (harness/metrics/glue.py CONFUSION), which gives the same numbers, bit for bit,
    from a few matrix products instead of a metric call per resample, seed and method (paired_differences)."""
    if confusion is not None:
        runs = list(preds_a) + list(preds_b)
        pair = (list(range(len(preds_a))), list(range(len(preds_a), len(runs))))
        return paired_differences(metric, confusion, runs, [pair], labels, resamples, level, seed)[0]
    a, b, labels = np.stack(preds_a), np.stack(preds_b), np.asarray(labels)

    def diff(pa: np.ndarray, pb: np.ndarray, idx: np.ndarray) -> float:
        return float(np.mean([metric(pa[s][idx], labels[idx]) - metric(pb[s][idx], labels[idx])
                              for s in range(len(pa))]))

    n = labels.shape[0]
    everything = np.arange(n)
    interval = bootstrap_interval(lambda idx: diff(a, b, idx), n, resamples, level, seed)
    rng = np.random.default_rng(seed + 1)
    # per example, the same swap under every seed; an example's row may be a vector (a segment's BLEU counts)
    swaps = (rng.random(n).reshape(n, *[1] * (a.ndim - 2)) < 0.5 for _ in range(resamples))
    swapped = [diff(np.where(s, b, a), np.where(s, a, b), everything) for s in swaps]
    return _paired_result(diff(a, b, everything), interval, swapped, len(a), n, resamples, level)


def _paired_result(observed: float, interval: dict, swapped, seeds: int, n: int, resamples: int, level: float) -> dict:
    extreme = int(np.sum(np.abs(np.asarray(swapped)) >= abs(observed) - 1e-12))
    return {"diff": observed, "low": interval["low"], "high": interval["high"], "level": level,
            "p_value": (extreme + 1) / (resamples + 1), "seeds": seeds, "examples": n, "resamples": resamples,
            "test": "approximate randomization (paired, per example), paired bootstrap interval"}


def paired_differences(metric: Callable, confusion: Callable, runs: list[np.ndarray], pairs: list[tuple],
                       labels: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = 0) -> list[dict]:
    """paired_difference (its `confusion` path) for many pairs on one evaluation set: `runs` holds the predictions
    of every run taking part, and each pair is (A's runs by seed, B's runs by seed) as indices into `runs`. A run's
    counts under every resample and every swap mask are linear in its one-hot (prediction, label) matrix, so they are
    computed once per run, for all runs in one matrix product per label class (RunCounts); a comparison then only
    subtracts and stacks counts. A report that compares hundreds of cells with the same best cell pays for each run once."""
    labels = np.asarray(labels)
    n, out = labels.shape[0], [None] * len(pairs)
    uniques, scores, by_classes = [np.unique(r) for r in runs], {}, {}

    def score(j: int) -> float:   # a run's metric on all examples, once however many pairs it takes part in
        if j not in scores:
            scores[j] = metric(runs[j], labels)
        return scores[j]

    for i, (ia, ib) in enumerate(pairs):
        classes = np.union1d(np.union1d(np.concatenate([uniques[j] for j in ia]),
                                        np.concatenate([uniques[j] for j in ib])), labels)
        by_classes.setdefault((classes.dtype.str, classes.tobytes()), (classes, []))[1].append(i)
    for classes, members in by_classes.values():
        used = sorted({j for i in members for j in (*pairs[i][0], *pairs[i][1])})
        counts = RunCounts(confusion, classes, [runs[j] for j in used], labels, resamples, seed)
        where = {j: p for p, j in enumerate(used)}
        for i in members:
            ia, ib = ([where[j] for j in side] for side in pairs[i])
            interval = _percentile(counts.bootstrap(ia, ib), level, resamples, seed)
            observed = float(np.mean([score(ja) - score(jb) for ja, jb in zip(*pairs[i])]))
            out[i] = _paired_result(observed, interval, counts.swapped(ia, ib), len(ia), n, resamples, level)
    return out


def _weights(n: int, resamples: int, seed: int):
    """The bootstrap's resamples (the draws of bootstrap_interval) as blocks of multiplicities: entry (r, i) is how
    often example i is drawn in resample r."""
    rng = np.random.default_rng(seed)
    for idx in _blocks(lambda shape: rng.integers(0, n, shape), n, resamples, max(1, RunCounts.CHUNK // n)):
        m = idx.shape[0]
        yield _exact(np.bincount((idx + n * np.arange(m)[:, None]).ravel(), minlength=m * n).reshape(m, n), n)


def _swaps(n: int, resamples: int, seed: int):
    """The randomization test's swap masks (the slow path's draws) as blocks of 0 / 1."""
    rng = np.random.default_rng(seed)
    for swap in _blocks(lambda shape: rng.random(shape) < 0.5, n, resamples, max(1, RunCounts.CHUNK // n)):
        yield _exact(swap, n)


def _exact(block: np.ndarray, n: int) -> np.ndarray:
    """Counts as floats for a matrix product that stays exact: every product of these and a one-hot matrix sums at
    most n integers, which float32 holds exactly below 2^24 (and float64 below 2^53); float32 halves the work."""
    return block.astype(np.float32 if n < 2**24 else np.float64)


def _resampled(make: Callable, n: int, resamples: int, seed: int):
    """`make`'s blocks for (n, resamples, seed). They depend on nothing else, so a report that compares hundreds of
    cells on the same evaluation set draws them once: kept while they are small (≤ 2^22 entries, 16 MB)."""
    return _kept(make, n, resamples, seed) if n * resamples <= 2**22 else make(n, resamples, seed)


@lru_cache(maxsize=4)
def _kept(make: Callable, n: int, resamples: int, seed: int) -> tuple:
    return tuple(make(n, resamples, seed))


class RunCounts:
    """Each run's confusion counts (prediction class × label class) under every bootstrap resample and under every
    swap mask of the randomization test, for runs on one evaluation set with one set of `classes`; from them the
    paired tests of a metric that is a function of the counts (accuracy, F1, Matthews). Counts are sums of integers,
    exact in any order (see _exact), and the metric is then computed from them with the same operations as on the
    examples, so every number equals the per-resample loop's (paired_difference without `confusion`)."""

    CHUNK = 2**22   # resample × example entries per matrix product

    def __init__(self, confusion: Callable, classes: np.ndarray, runs: list[np.ndarray], labels: np.ndarray,
                 resamples: int, seed: int):
        self.confusion, self.classes = confusion, classes
        k, label_at = len(classes), np.searchsorted(classes, labels)
        predicted = np.stack([np.searchsorted(classes, r) for r in runs], axis=1)   # (examples, runs)
        self.own = np.stack([np.bincount(p * k + label_at, minlength=k * k) for p in predicted.T]).astype(np.float64)
        counts = _LabelSplit(label_at, predicted, k)
        # a resample's counts of a run are its own: each run's metric under every resample, once
        self.drawn = confusion(counts.resampled(_weights, resamples, seed).astype(np.float64), classes)
        self.moved = counts.resampled(_swaps, resamples, seed + 1).reshape(resamples, len(runs), k * k)

    def _diffs(self, counts: np.ndarray) -> np.ndarray:
        """(resamples, 2, seeds, k·k) counts of A then B → per resample the seed-mean of metric(A) − metric(B)."""
        k, (resamples, _, seeds, _) = len(self.classes), counts.shape
        ma, mb = (self.confusion(counts[:, m].reshape(resamples, seeds, k, k), self.classes) for m in (0, 1))
        return np.mean(ma - mb, axis=1)

    def bootstrap(self, ia: list[int], ib: list[int]) -> np.ndarray:
        """Per resample, the seed-mean difference of A's runs `ia` and B's `ib` (positions in `runs`, by seed)."""
        return np.mean(self.drawn[:, ia] - self.drawn[:, ib], axis=1)

    def swapped(self, ia: list[int], ib: list[int]) -> np.ndarray:
        """Per swap mask (an example's A and B predictions exchanged where it is 1), the seed-mean difference over all
        examples: A's counts gain B's swapped counts and lose their own, and B's the reverse."""
        moved = self.moved[:, ib].astype(np.float64) - self.moved[:, ia]   # (resamples, seeds, k·k)
        base = np.stack([self.own[ia], self.own[ib]])                  # (2, seeds, k·k)
        return self._diffs(base + np.stack([moved, -moved], axis=1))


class _LabelSplit:
    """Runs' confusion counts under weighted examples (a block of bootstrap multiplicities or swap masks), from one
    matrix product per label class: an example of label l adds its weight to count (its prediction, l) only, so with
    the examples split by label each run needs a column per predicted class, not per (prediction, label) pair; and
    the first class's count is the label's total weight less the others' (integers: exact, see _exact). A quarter
    of a one-hot product's work for two classes."""

    def __init__(self, label_at: np.ndarray, predicted: np.ndarray, k: int):
        self.k, self.runs = k, predicted.shape[1]
        self.rows = [np.flatnonzero(label_at == c) for c in range(k)]
        dtype = np.float32 if len(label_at) < 2**24 else np.float64
        self.onehot = []
        for rows in self.rows:   # (examples of label c, runs × classes 1..k-1): 1 where the run predicted that class
            hot, found = np.zeros((len(rows), self.runs * (k - 1)), dtype=dtype), predicted[rows]
            row, run = np.nonzero(found > 0)
            hot[row, found[row, run] - 1 + (k - 1) * run] = 1
            self.onehot.append(hot)

    def resampled(self, make: Callable, resamples: int, seed: int) -> np.ndarray:
        """(resamples, runs, k, k) counts [prediction, label] under every block of `make`."""
        n, k = sum(len(rows) for rows in self.rows), self.k
        blocks = []
        for block in _resampled(make, n, resamples, seed):
            out = np.empty((block.shape[0], self.runs, k, k), dtype=block.dtype)
            for c, (rows, hot) in enumerate(zip(self.rows, self.onehot)):
                weights = block[:, rows]
                part = (weights @ hot).reshape(block.shape[0], self.runs, k - 1)
                out[:, :, 1:, c] = part
                out[:, :, 0, c] = weights.sum(axis=1)[:, None] - part.sum(axis=2)
            blocks.append(out)
        return np.concatenate(blocks)


def seed_interval(values, level: float = LEVEL) -> dict:
    """Across seeds: {n, mean, median, std (ddof=1), low, high}; the interval is mean ± t·std/√n (none for n < 2).
    The t quantile is scipy.special.stdtrit, what scipy.stats.t.ppf computes (bit for bit), without importing
    scipy.stats (~0.7 s of imports)."""
    from scipy.special import stdtrit

    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(values)
    out = {"n": n, "mean": float(values.mean()) if n else math.nan, "median": float(np.median(values)) if n else math.nan,
           "std": float(values.std(ddof=1)) if n > 1 else math.nan, "low": math.nan, "high": math.nan}
    if n > 1:
        half = stdtrit(n - 1, 1 - (1 - level) / 2) * out["std"] / math.sqrt(n)
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
