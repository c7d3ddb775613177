"""GLUE metrics against values computed by hand."""
import math

import pytest

from harness.metrics.glue import compute


def test_accuracy_f1_matthews_by_hand():
    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 1, 0, 0, 0, 1, 1, 0]
    # TP=3 (idx 0,1,6), FN=1 (idx 2), FP=1 (idx 5), TN=3 (idx 3,4,7)
    out = compute(["accuracy", "f1", "matthews_corr"], preds, labels)
    assert out["accuracy"] == pytest.approx(6 / 8)
    assert out["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # 2TP / (2TP + FP + FN) = 0.75
    # MCC = (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 − 1) / sqrt(4·4·4·4) = 0.5
    assert out["matthews_corr"] == pytest.approx(0.5)


def test_matthews_is_zero_for_constant_predictions():
    assert compute(["matthews_corr"], [1, 1, 1, 1], [1, 0, 1, 0])["matthews_corr"] == 0.0


def test_pearson_spearman_by_hand():
    labels = [1.0, 2.0, 3.0, 4.0]
    preds = [1.0, 3.0, 2.0, 4.0]
    # deviations: labels (−1.5, −.5, .5, 1.5), preds (−1.5, .5, −.5, 1.5): Σxy = 2.25 − .25 − .25 + 2.25 = 4, Σx² = Σy² = 5
    out = compute(["pearson", "spearman"], preds, labels)
    assert out["pearson"] == pytest.approx(4 / 5)
    # ranks equal the values here, so Spearman = Pearson of ranks = 0.8
    assert out["spearman"] == pytest.approx(0.8)
    assert not math.isnan(compute(["pearson"], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])
