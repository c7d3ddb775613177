"""FT^Top2: only the last two layers (+ head) train; the count is those layers' parameters; it learns; it runs end to end."""
import pytest
import torch

import methods
from harness.errors import ConfigError
from harness.runner import run
from tests.conftest import compose_cfg
from tests.methods_util import tiny_classifier, train_steps

FOUR_LAYERS = ["model.config.num_hidden_layers=4"]   # the layer count is read from the model's config


def bert_layer_params(d, f):
    """One BERT layer: q, k, v, o (d×d + d each), two LayerNorms (2d each), FFN d→f→d."""
    return 4 * (d * d + d) + 2 * 2 * d + (d * f + f) + (f * d + d)


def tiny4():
    return tiny_classifier("tiny-bert", *FOUR_LAYERS)


def test_only_the_last_two_layers_train_and_the_count_is_theirs():
    model, info = tiny4()
    method, cfg = methods.build({"name": "ft_top2"})
    model = method.apply(model, cfg, info)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.3.")) for n in trained)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * bert_layer_params(32, 64)


def test_a_few_steps_reduce_the_loss():
    model, info = tiny4()
    method, cfg = methods.build({"name": "ft_top2"})
    model = method.apply(model, cfg, info).eval()   # eval: no dropout, so only the steps change the loss
    for name, p in model.named_parameters():         # as the runner does: the task head trains too
        p.requires_grad_(p.requires_grad or info.is_head(name))
    torch.manual_seed(1)
    ids = torch.randint(1000, 30000, (4, 9))
    losses = train_steps(model, {"input_ids": ids, "labels": torch.tensor([0, 1, 0, 1])}, lr=1e-2)
    assert losses[-1] < 0.9 * losses[0]


def test_bad_values():
    with pytest.raises(ConfigError, match="top must be > 0, got 0"):
        methods.build({"name": "ft_top2", "top": 0})
    model, info = tiny4()
    method, cfg = methods.build({"name": "ft_top2", "top": 5})
    with pytest.raises(ConfigError, match="method.top=5 exceeds the 4 layers of tiny-bert"):
        method.apply(model, cfg, info)


def test_runs_end_to_end_and_records_the_count(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=ft_top2", *FOUR_LAYERS), tmp_path)
    assert record["status"] == "completed" and record["method"] == "ft_top2"
    assert record["params"]["trainable_no_head"] == 2 * bert_layer_params(32, 64)
    assert record["params"]["trainable"] == record["params"]["trainable_no_head"] + 32 * 32 + 32 + 32 * 2 + 2
