"""Uncertainty (harness/stats.py): bootstrap intervals, the paired randomization test, seed-level intervals, and the
numpy metrics they resample with, against hand-computed cases and scipy / scikit-learn."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sp

from harness import stats
from harness.metrics import glue


def accuracy(preds, labels):
    return float(np.mean(preds == labels))


def test_bootstrap_of_a_constant_is_that_constant():
    found = stats.bootstrap_interval(lambda idx: 1.0, 50)
    assert (found["low"], found["high"]) == (1.0, 1.0) and found["level"] == 0.95 and found["resamples"] == 1000


def test_bootstrap_of_two_examples_by_hand():
    """Accuracy over 2 examples, one right: a resample has accuracy 0, ½ or 1 with probability ¼, ½, ¼, so the 2.5 % and
    97.5 % quantiles of many resamples are 0 and 1."""
    correct = np.array([1.0, 0.0])
    found = stats.bootstrap_interval(lambda idx: correct[idx].mean(), 2, resamples=4000)
    assert (found["low"], found["high"]) == (0.0, 1.0)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(3)
    correct = (rng.random(300) < 0.8).astype(float)
    ours = stats.bootstrap_interval(lambda idx: correct[idx].mean(), 300, resamples=5000, seed=1)
    theirs = sp.bootstrap((correct,), np.mean, n_resamples=5000, method="percentile", random_state=2)
    assert ours["low"] == pytest.approx(theirs.confidence_interval.low, abs=0.01)
    assert ours["high"] == pytest.approx(theirs.confidence_interval.high, abs=0.01)


def test_bootstrap_is_seeded():
    correct = np.arange(40) % 3 == 0
    first = stats.bootstrap_interval(lambda idx: correct[idx].mean(), 40, seed=7)
    assert first == stats.bootstrap_interval(lambda idx: correct[idx].mean(), 40, seed=7)


def _exact_randomization_p(a, b, labels):
    """Every one of the 2^n per-example swaps of A's and B's predictions, by brute force."""
    observed = abs(accuracy(a, labels) - accuracy(b, labels))
    hits = 0
    for swap in itertools.product((False, True), repeat=len(labels)):
        swap = np.array(swap)
        sa, sb = np.where(swap, b, a), np.where(swap, a, b)
        hits += abs(accuracy(sa, labels) - accuracy(sb, labels)) >= observed - 1e-12
    return hits / 2 ** len(labels)


def test_paired_randomization_matches_the_exact_enumeration():
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1])
    a = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1])   # 9 of 10 right
    b = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1, 1])   # 6 of 10 right
    found = stats.paired_difference(accuracy, [a], [b], labels, resamples=20000)
    assert found["diff"] == pytest.approx(0.3)
    assert found["p_value"] == pytest.approx(_exact_randomization_p(a, b, labels), abs=0.01)


def test_paired_randomization_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.85, labels, 1 - labels)
    b = np.where(rng.random(200) < 0.78, labels, 1 - labels)
    ours = stats.paired_difference(accuracy, [a], [b], labels, resamples=5000)
    theirs = sp.permutation_test(((a == labels).astype(float), (b == labels).astype(float)),
                                 lambda x, y: np.mean(x) - np.mean(y), permutation_type="samples",
                                 n_resamples=5000, alternative="two-sided", random_state=1)
    assert ours["p_value"] == pytest.approx(theirs.pvalue, abs=0.02)
    assert ours["low"] < ours["diff"] < ours["high"]


def test_seeds_are_paired_and_averaged():
    labels = np.array([1, 1, 0, 0])
    a = [np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])]   # 1.0, 0.75
    b = [np.array([0, 1, 0, 0]), np.array([1, 1, 0, 1])]   # 0.75, 0.75
    assert stats.paired_difference(accuracy, a, b, labels, resamples=10)["diff"] == pytest.approx(0.125)


def test_rows_of_statistics_swap_and_resample_whole_as_values_do():
    """A corpus metric's examples are rows of sufficient statistics (E2E: each MR's BLEU counts). Accuracy from rows
    (right, 1) summed over examples is the same test as accuracy from predictions: equal numbers, bit for bit."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    a = [np.where(rng.random(80) < p, labels, 1 - labels) for p in (0.9, 0.85)]
    b = [np.where(rng.random(80) < p, labels, 1 - labels) for p in (0.7, 0.75)]
    rows = [np.stack([(x == labels).astype(float), np.ones(80)], axis=1) for x in a + b]
    from_rows = stats.paired_difference(lambda r, _: float(r[:, 0].sum() / r[:, 1].sum()), rows[:2], rows[2:], labels,
                                        resamples=300)
    assert from_rows == stats.paired_difference(accuracy, a, b, labels, resamples=300)


def test_seed_interval_is_students_t():
    values = [0.81, 0.84, 0.80, 0.83, 0.82]
    found = stats.seed_interval(values)
    low, high = sp.t.interval(0.95, 4, loc=np.mean(values), scale=sp.sem(values))
    assert (found["low"], found["high"]) == (pytest.approx(low), pytest.approx(high))
    assert found["median"] == 0.82 and found["n"] == 5
    assert math.isnan(stats.seed_interval([0.8])["low"])


def test_seed_interval_equals_scipy_stats_t_ppf_bit_for_bit():
    # seed_interval takes its t quantile from scipy.special (scipy.stats is slow to import): the same numbers as
    # mean ± t.ppf · std / √n, bit for bit, at every seed count a report meets (committed reports' tables rely on it)
    rng = np.random.default_rng(0)
    for n in range(2, 41):
        values = rng.random(n).tolist()
        found = stats.seed_interval(values, level=0.95)
        half = sp.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n)
        assert (found["low"], found["high"]) == (np.mean(values) - half, np.mean(values) + half)


def test_sign_flip_over_seeds_by_hand():
    """d = (1, 2, 3): of the 8 sign patterns only +++ and −−− reach |mean| ≥ 2, so p = 2/8."""
    assert stats.sign_flip_p([1, 2, 3]) == 0.25
    assert stats.sign_flip_p([0.5, -0.5]) == 1.0


@pytest.mark.parametrize("name", ["accuracy", "f1", "matthews_corr", "pearson", "spearman"])
def test_fast_metrics_equal_the_scorers(name):
    rng = np.random.default_rng(5)
    for classes in (2, 3):
        labels = rng.integers(0, classes, 500)
        preds = np.where(rng.random(500) < 0.6, labels, rng.integers(0, classes, 500))
        if name in ("pearson", "spearman"):
            labels, preds = rng.random(500) * 5, rng.random(500) * 5 + labels
        if name == "f1" and classes == 3:
            continue  # binary F1 (MRPC, QQP)
        assert glue.FAST[name](preds, labels) == pytest.approx(glue.METRICS[name](preds, labels), abs=1e-12)


def test_bleu_interval_resamples_segments_and_equals_mteval_on_all_of_them():
    from harness.metrics.e2e import bleu_interval, mteval_bleu_nist

    rng = np.random.default_rng(2)
    words = "the eagle is a pub near river cheap french food family friendly zizzi rated high".split()
    hyps = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(40)]
    refs = [[" ".join(rng.choice(words, rng.integers(4, 12))) for _ in range(rng.integers(1, 4))] for _ in range(40)]
    found = bleu_interval(hyps, refs)
    assert found["value"] == pytest.approx(mteval_bleu_nist(hyps, refs)[0], abs=1e-12)
    assert found["low"] <= found["value"] <= found["high"] and found["metric"] == "bleu"


def test_wikisql_interval_is_over_logical_form_hits():
    from harness.tasks import wikisql
    from harness.tasks.pipeline import EvalItem

    header = ["Player", "No."]
    example = {"sql": {"sel": 0, "agg": 0, "conds": [[1, 0, "3"]]}, "header": header, "table_id": "t"}
    items = [EvalItem("q", {}, ["g"], example)] * 4
    right, wrong = "SELECT Player FROM table WHERE No. = 3", "SELECT No. FROM table"

    class Task:
        headline = "logical_form_acc"

    found = wikisql.interval(Task, [right, right, right, wrong], items)
    assert found["value"] == 0.75 and 0.0 <= found["low"] <= 0.75 <= found["high"] <= 1.0


@pytest.mark.parametrize("metric", ["accuracy", "f1", "matthews_corr"])
def test_paired_difference_from_confusion_counts_equals_the_loop_bit_for_bit(metric):
    """The report's fast path (stats.Counts + glue.CONFUSION) gives exactly the per-resample loop's numbers: the
    difference, the interval and the p-value, for 2 and 3 classes, 1 to 4 seeds, constant predictions included."""
    rng = np.random.default_rng(7)
    for trial, (n, seeds, k) in enumerate([(37, 1, 2), (120, 3, 2), (75, 4, 3), (50, 2, 2)]):
        labels = rng.integers(0, k, n)
        a = [np.where(rng.random(n) < 0.7, labels, rng.integers(0, k, n)) for _ in range(seeds)]
        b = [np.where(rng.random(n) < 0.6, labels, rng.integers(0, k, n)) for _ in range(seeds)]
        if trial == 3:
            a = [np.zeros(n, dtype=int)] * seeds
        loop = stats.paired_difference(glue.FAST[metric], a, b, labels, resamples=150, seed=trial)
        fast = stats.paired_difference(glue.FAST[metric], a, b, labels, resamples=150, seed=trial,
                                       confusion=glue.CONFUSION[metric])
        assert fast == loop


@pytest.mark.parametrize("metric", ["accuracy", "f1", "matthews_corr"])
def test_many_pairs_at_once_equal_each_pair_alone_bit_for_bit(metric):
    """The report compares many cells at once (stats.paired_differences: runs shared between pairs, each run's counts
    from one float32 matrix product for all runs): every pair's numbers equal the per-resample loop's for that pair
    alone, bit for bit, constant predictions and a run compared with itself included."""
    rng = np.random.default_rng(11)
    n, k = 90, 3
    labels = rng.integers(0, k, n)
    runs = [np.where(rng.random(n) < rate, labels, rng.integers(0, k, n)) for rate in (0.9, 0.8, 0.7, 0.6, 0.5)]
    runs.append(np.zeros(n, dtype=int))
    pairs = [([0, 1], [2, 3]), ([4], [0]), ([2, 3], [0, 1]), ([5, 4], [1, 0]), ([0], [0])]
    found = stats.paired_differences(glue.FAST[metric], glue.CONFUSION[metric], runs, pairs, labels, resamples=120,
                                     seed=2)
    for (ia, ib), result in zip(pairs, found):
        loop = stats.paired_difference(glue.FAST[metric], [runs[i] for i in ia], [runs[i] for i in ib], labels,
                                       resamples=120, seed=2)
        assert result == loop


@pytest.mark.parametrize("metric", ["accuracy", "f1", "matthews_corr"])
def test_counts_split_by_label_are_exact_where_a_class_has_no_example(metric):
    """Each run's counts come from one product per label class (stats._LabelSplit): labels of one class only, a class
    that only a prediction has, and a single class in all give the per-resample loop's numbers, bit for bit."""
    rng = np.random.default_rng(5)
    n = 40
    for labels, runs in [(np.ones(n, dtype=int), [rng.integers(0, 3, n), rng.integers(0, 2, n), np.ones(n, dtype=int)]),
                         (np.zeros(n, dtype=int), [np.zeros(n, dtype=int), np.zeros(n, dtype=int)])]:
        pairs = [([0], [1]), ([1], [0])]
        found = stats.paired_differences(glue.FAST[metric], glue.CONFUSION[metric], runs, pairs, labels,
                                         resamples=60, seed=3)
        for (ia, ib), result in zip(pairs, found):
            assert result == stats.paired_difference(glue.FAST[metric], [runs[i] for i in ia],
                                                     [runs[i] for i in ib], labels, resamples=60, seed=3)
