"""Silent-failure flags: constant predictions, a headline metric at chance, a loss that never fell."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import methods
from harness.flags import Evaluation, at_chance, flags, loss_ends, prediction_stats
from harness.runner import run
from tests.conftest import compose_cfg


def test_prediction_stats_and_chance_levels():
    labels = np.array([1, 1, 1, 0])
    stats = prediction_stats(np.array([1, 1, 1, 1]), labels, regression=False)
    assert stats == {"n": 4, "distinct_predictions": 1, "majority_rate": 0.75, "positive_rate": 0.75}
    assert at_chance("accuracy", 0.75, stats) and not at_chance("accuracy", 0.76, stats)
    assert at_chance("matthews_corr", 0.0, stats) and not at_chance("matthews_corr", 0.1, stats)
    assert at_chance("f1", 2 * 0.75 / 1.75, stats) and not at_chance("f1", 0.9, stats)
    assert at_chance("pearson", -0.2, {}) and not at_chance("bleu", 0.0, {})
    assert prediction_stats(np.array([0.5, 0.5]), np.array([0.1, 4.0]), regression=True)["prediction_std"] == 0.0


@pytest.mark.parametrize("best,stats,losses,skipped,expected", [
    ({"accuracy": 0.9}, {"distinct_predictions": 2, "majority_rate": 0.5}, [0.7, 0.6, 0.5], 0, []),
    ({"accuracy": 0.5}, {"distinct_predictions": 1, "majority_rate": 0.5}, [0.7, 0.6], 0,
     ["constant_predictions", "chance_level"]),
    ({"matthews_corr": 0.0}, {"distinct_predictions": 2}, [0.69, 0.69], 0, ["chance_level", "loss_never_fell"]),
    ({"accuracy": float("nan")}, {}, [0.7, 0.8], 3, ["nonfinite_metric", "loss_never_fell", "nonfinite_batches_skipped"]),
    ({"pearson": 0.8}, {"distinct_predictions": 9, "prediction_std": 1.2}, [0.7], 0, []),  # one batch: no loss flag
])
def test_flags(best, stats, losses, skipped, expected):
    assert flags(next(iter(best)), best, stats, losses, skipped) == expected


def test_loss_ends_average_the_first_and_last_tenth():
    assert loss_ends([1.0] * 10 + [0.5] * 80 + [0.2] * 10) == (1.0, 0.2)
    assert loss_ends([0.3]) is None


def test_evaluation_is_a_plain_metrics_dict_with_stats():
    ev = Evaluation({"accuracy": 0.5}, {"distinct_predictions": 1})
    assert ev == {"accuracy": 0.5} and dict(ev) == {"accuracy": 0.5} and ev.stats["distinct_predictions"] == 1


class ConstantHead(nn.Module):
    """Logits that ignore the input: the same prediction for every example."""

    def __init__(self, num_labels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_labels))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1)


@dataclass
class NoConfig:
    pass


def constant_head(model, cfg, info):
    for name, p in model.named_parameters():
        # one bias outside the head trains (at lr 1e-30: unmoved), as a method must train something besides the head
        p.requires_grad_(name.endswith("embeddings.LayerNorm.bias"))
    if hasattr(model, "classifier"):  # the start-up check applies methods to a headless skeleton too
        model.classifier = ConstantHead(model.classifier.out_features)
    return model


def test_a_constant_predictor_at_chance_that_never_learns_is_flagged(tiny_overrides, tmp_path, monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "constant_head", methods.Method("constant_head", NoConfig, constant_head))
    record = run(compose_cfg(*tiny_overrides, "task=glue/cola", "method=bitfit", "method.name=constant_head",
                             "trainer.lr=1e-30"), tmp_path)
    assert record["status"] == "completed"
    assert record["metrics"]["best"]["matthews_corr"] == 0.0
    assert record["flags"] == ["constant_predictions", "chance_level", "loss_never_fell"]
    assert record["metrics"]["train_loss_end"] >= record["metrics"]["train_loss_start"]



def test_generation_flags_catch_degenerate_empty_and_near_zero_runs():
    """The silent failures of a generation run: 'richer richer richer …', empty outputs, a score an untrained model
    gets; a healthy run is not flagged."""
    from harness.flags import generation_stats

    degenerate = ["richer richer richer richer", "the the the the food", "a pub", "near the river"]
    stats = generation_stats(degenerate)
    assert stats["repetitive_share"] == 0.5 and stats["empty_share"] == 0.0
    assert flags("bleu", {"bleu": 0.007}, stats, [2.0, 1.0]) == ["degenerate_repetition", "near_zero_headline"]
    empty = generation_stats(["", " ", "a pub near the river", "a cheap place"])
    assert flags("bleu", {"bleu": 0.3}, empty, [2.0, 1.0]) == ["empty_outputs"]
    healthy = generation_stats(["The Eagle is a pub near the river.", "Zizzi is a cheap, family friendly place."])
    assert flags("bleu", {"bleu": 0.55}, healthy, [2.0, 1.0]) == []
    assert flags("bleu", {"bleu": 0.55}, generation_stats(["same", "same"]), [2.0, 1.0]) == ["constant_predictions"]
