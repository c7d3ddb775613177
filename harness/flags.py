"""Silent-failure flags for the run record: a run can complete and still be useless, and a table of numbers hides it.

    constant_predictions   the evaluation behind the reported (best) metric predicted one class (or one value) for all
    chance_level           that headline metric is no better than a trivial predictor: MCC or a correlation ≤ 0,
                           accuracy ≤ the majority-class rate, F1 ≤ the F1 of always predicting the positive class
    nonfinite_metric       the headline metric is NaN or infinite
    loss_never_fell        the training loss at the end (mean of the last 10% of batches) is not below the loss at the
                           start (mean of the first 10%)
    nonfinite_batches_skipped   some batches had a non-finite loss or gradient and were skipped (trainer.nonfinite_retries)
    protocol_deviation     (set by the runner) the run asked for the paper's protocol (+protocol=paper) and a
                           command-line override deviates from it (harness/protocols)

and for generation tasks, from the generations behind the reported metrics (`generation_stats`):

    empty_outputs          at least a fifth of the generations are empty
    degenerate_repetition  at least a fifth repeat themselves (a word 4 times running, or a 2- or 3-word phrase 3 times:
                           "richer richer richer …")
    near_zero_headline     the headline score is at most 0.05 (BLEU 5, 5 % logical-form accuracy): where an untrained
                           model is (SmolLM2 untrained on E2E: BLEU 0.5, reports/e2e_smollm2)

An evaluator reports what the flags need about its predictions by returning an `Evaluation`: a plain {metric: value}
dict (so the training loop and logging treat it as any other) with a `stats` attribute for the headline split.
"""
from __future__ import annotations

import math
import statistics


class Evaluation(dict):
    """{metric: value}, plus `stats` about the headline split's predictions: `distinct_predictions`, and for labels
    `majority_rate` (share of the most frequent label) and `positive_rate` (share of label 1), or for regression
    `prediction_std`; and `predictions`, the headline split's per-example rows ({id, label, prediction, scores}) that
    the run keeps for its best epoch (predictions.jsonl.gz: intervals and paired comparisons read them); and
    `examples`, how many examples it evaluated (every split: the record's evaluation examples per second)."""

    def __init__(self, metrics: dict, stats: dict | None = None, predictions: list[dict] | None = None,
                 examples: int | None = None):
        super().__init__(metrics)
        self.stats = stats or {}
        self.predictions = predictions
        self.examples = examples


def prediction_stats(preds, labels, regression: bool) -> dict:
    import numpy as np

    preds, labels = np.asarray(preds), np.asarray(labels)
    stats = {"n": int(len(preds)), "distinct_predictions": int(len(np.unique(preds)))}
    if regression:
        stats["prediction_std"] = float(np.std(preds)) if len(preds) else 0.0
    elif len(labels):
        counts = np.bincount(labels.astype(int))
        stats["majority_rate"] = float(counts.max() / len(labels))
        stats["positive_rate"] = float(np.mean(labels == 1))
    return stats


def at_chance(metric: str, value: float, stats: dict) -> bool:
    if metric in ("matthews_corr", "pearson", "spearman"):
        return value <= 0.0
    if metric == "accuracy" and "majority_rate" in stats:
        return value <= stats["majority_rate"] + 1e-12
    if metric == "f1" and "positive_rate" in stats:
        p = stats["positive_rate"]
        return value <= 2 * p / (1 + p) + 1e-12  # F1 of predicting 1 everywhere: precision p, recall 1
    return False


def loss_ends(losses: list[float]) -> tuple[float, float] | None:
    """Mean training loss over the first and the last 10% of batches (None: fewer than two batches)."""
    if len(losses) < 2:
        return None
    k = max(1, len(losses) // 10)
    return statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])


SHARE = 0.2          # the share of generations that is empty or repetitive for a flag
NEAR_ZERO = 0.05


def _repetitive(text: str) -> bool:
    words = text.split()
    for n, times in ((1, 4), (2, 3), (3, 3)):
        for i in range(len(words) - n * times + 1):
            if all(words[i + k * n:i + (k + 1) * n] == words[i:i + n] for k in range(times)):
                return True
    return False


def generation_stats(outputs: list[str]) -> dict:
    """What the generation flags need: how many outputs, distinct, empty and repetitive."""
    n = len(outputs)
    return {"n": n, "distinct_predictions": len(set(outputs)),
            "empty_share": sum(not o.strip() for o in outputs) / max(n, 1),
            "repetitive_share": sum(_repetitive(o) for o in outputs) / max(n, 1)}


def _generation_flags(value, stats: dict) -> list[str]:
    out = []
    if stats["empty_share"] >= SHARE:
        out.append("empty_outputs")
    if stats["repetitive_share"] >= SHARE:
        out.append("degenerate_repetition")
    if value is not None and math.isfinite(value) and value <= NEAR_ZERO:
        out.append("near_zero_headline")
    return out


def flags(headline: str, best: dict, stats: dict | None, losses: list[float], nonfinite_skipped: int = 0) -> list[str]:
    out = []
    stats = stats or {}
    value = best.get(headline)
    if stats.get("distinct_predictions") == 1 or stats.get("prediction_std") == 0.0:
        out.append("constant_predictions")
    if value is not None and not math.isfinite(value):
        out.append("nonfinite_metric")
    elif value is not None and at_chance(headline, value, stats):
        out.append("chance_level")
    ends = loss_ends(losses)
    if ends and ends[1] >= ends[0]:
        out.append("loss_never_fell")
    if nonfinite_skipped:
        out.append("nonfinite_batches_skipped")
    if "empty_share" in stats:
        out += _generation_flags(value, stats)
    return out
