"""GLUE's official dev metrics (Wang et al. 2018): accuracy, F1 of the positive class (MRPC, QQP), Matthews correlation
(CoLA), Pearson and Spearman correlation (STS-B). Values are returned as the scorers give them (0.912, not 91.2)."""
from __future__ import annotations

import numpy as np

# scipy.stats and sklearn.metrics are imported where a score is computed, not with this module: the task's dataset
# module imports it at start-up (harness/validate.py), and those two imports are seconds that a run would otherwise
# pay before its first training step (harness-bench startup).


def _accuracy(preds, labels):
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, preds))


def _f1(preds, labels):
    from sklearn.metrics import f1_score

    return float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0))


def _matthews(preds, labels):
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, preds))


def _pearson(preds, labels):
    if np.std(preds) == 0 or np.std(labels) == 0:
        return 0.0  # undefined for a constant vector; report no correlation rather than NaN
    from scipy import stats

    return float(stats.pearsonr(preds, labels)[0])


def _spearman(preds, labels):
    if np.std(preds) == 0 or np.std(labels) == 0:
        return 0.0
    from scipy import stats

    return float(stats.spearmanr(preds, labels)[0])


METRICS = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_corr": _matthews,
    "pearson": _pearson,
    "spearman": _spearman,
}


def compute(names, preds, labels) -> dict[str, float]:
    preds, labels = np.asarray(preds), np.asarray(labels)
    return {name: METRICS[name](preds, labels) for name in names}


# --- the same metrics in plain numpy, for the thousands of resamples of a bootstrap or a randomization test --------
# (equal to the scorers above on any input: tests/test_stats.py)

def _np_f1(preds, labels):
    tp = np.sum((preds == 1) & (labels == 1))
    predicted, actual = np.sum(preds == 1), np.sum(labels == 1)
    return float(2 * tp / (predicted + actual)) if predicted + actual else 0.0


def _np_matthews(preds, labels):
    """Gorodkin's multi-class Matthews correlation (sklearn's formula), from the confusion matrix."""
    classes = np.union1d(preds, labels)
    confusion = (preds[:, None] == classes[None, :]).T.astype(float) @ (labels[:, None] == classes[None, :])
    t, p = confusion.sum(axis=0), confusion.sum(axis=1)   # true and predicted counts per class
    n, c = confusion.sum(), np.trace(confusion)
    denominator = np.sqrt((n * n - p @ p) * (n * n - t @ t))
    return float((c * n - t @ p) / denominator) if denominator else 0.0


def _np_pearson(preds, labels):
    if np.std(preds) == 0 or np.std(labels) == 0:
        return 0.0
    return float(np.corrcoef(preds, labels)[0, 1])


def _np_spearman(preds, labels):
    from scipy import stats

    return _np_pearson(stats.rankdata(preds), stats.rankdata(labels))


FAST = {"accuracy": lambda preds, labels: float(np.mean(preds == labels)), "f1": _np_f1, "matthews_corr": _np_matthews,
        "pearson": _np_pearson, "spearman": _np_spearman}


# --- accuracy, F1 and Matthews from confusion counts, for many resamples at once (harness/stats.py Counts) -----------
# `conf[..., i, j]`: how many (resampled) examples have prediction classes[i] and label classes[j]. Each computes what
# its FAST twin computes on the examples, with the same float operations on the same (integer-valued) counts, so the
# results are equal bit for bit (tests/test_stats.py).

def _conf_accuracy(conf, classes):
    return np.trace(conf, axis1=-2, axis2=-1) / conf.sum(axis=(-2, -1))


def _conf_f1(conf, classes):
    if 1 not in classes:
        return np.zeros(conf.shape[:-2])
    k = int(np.searchsorted(classes, 1))
    tp, total = conf[..., k, k], conf[..., k, :].sum(axis=-1) + conf[..., :, k].sum(axis=-1)
    return np.where(total > 0, 2 * tp / np.where(total > 0, total, 1), 0.0)


def _conf_matthews(conf, classes):
    t, p = conf.sum(axis=-2), conf.sum(axis=-1)          # per class: labels, predictions
    n, c = conf.sum(axis=(-2, -1)), np.trace(conf, axis1=-2, axis2=-1)
    denominator = np.sqrt((n * n - (p * p).sum(axis=-1)) * (n * n - (t * t).sum(axis=-1)))
    return np.where(denominator != 0, (c * n - (t * p).sum(axis=-1)) / np.where(denominator != 0, denominator, 1), 0.0)


CONFUSION = {"accuracy": _conf_accuracy, "f1": _conf_f1, "matthews_corr": _conf_matthews}
