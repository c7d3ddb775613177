"""Adapters (AdapterH/P/L/D): what trains, identity at initialisation, the paper's parameter count, learning, and end-to-end
runs on the tiny BERT."""
import copy

import pytest
import torch
from omegaconf import OmegaConf

import methods
from harness.errors import ConfigError
from harness.models.info import ModelInfo
from harness.runner import run
from methods.adapters import Adapted
from tests.conftest import compose_cfg
from tests.methods_util import adapt, tiny_classifier as tiny, train_steps, trainable_no_head

VARIANTS = ["adapter_h", "adapter_p", "adapter_l", "adapter_d"]
D, L = 32, 2   # tiny-bert


def paper_count(n_adapters, n_norms, d, r):
    return n_adapters * (2 * d * r + r + d) + 2 * n_norms * d   # Hu et al. 2022, §5.1


@pytest.fixture
def batch():
    torch.manual_seed(1)
    ids = torch.randint(1000, 30000, (4, 9))   # no shared [CLS]: a random tiny BERT's pooled token must differ per row
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 0, 1])}


@pytest.mark.parametrize("name,n_adapters,n_norms", [
    ("adapter_h", 2 * L, 2 * L),       # attention + FFN per layer; the model's two LayerNorms per layer train
    ("adapter_p", L, 0),
    ("adapter_l", L, L),               # each adapter has its own LayerNorm
    ("adapter_d", L - 1, 0),           # drop_lowest=1: layer 0 has none
])
def test_parameter_count_is_the_papers_formula(name, n_adapters, n_norms):
    model, info = tiny()
    model, cfg = adapt(name, model, info, r=4, **({"drop_lowest": 1} if name == "adapter_d" else {}))
    trainable = trainable_no_head(model, info)
    assert trainable == paper_count(n_adapters, n_norms, D, 4)
    assert methods.REGISTRY[name].count(cfg, info, model) == trainable


@pytest.mark.parametrize("name", VARIANTS)
def test_only_adapters_and_the_variants_norms_train(name):
    model, info = tiny()
    model, _ = adapt(name, model, info, **({"drop_lowest": 1} if name == "adapter_d" else {}))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = {n for n in trained if ".adapter." in n}
    assert adapters and all(".base_layer." not in n for n in trained)
    norms = trained - adapters
    if name == "adapter_h":
        assert norms == {f"bert.encoder.layer.{i}.{part}.LayerNorm.{w}" for i in range(L)
                         for part in ("attention.output", "output") for w in ("weight", "bias")}
    else:
        assert norms == set()
    assert any(".adapter.norm." in n for n in adapters) == (name == "adapter_l")
    wrapped = {n for n, m in model.named_modules() if isinstance(m, Adapted)}
    expected = {"adapter_h": {f"bert.encoder.layer.{i}.{s}" for i in (0, 1) for s in ("attention.output.dense", "output.dense")},
                "adapter_p": {f"bert.encoder.layer.{i}.output.dense" for i in (0, 1)},
                "adapter_l": {f"bert.encoder.layer.{i}.output" for i in (0, 1)},
                "adapter_d": {"bert.encoder.layer.1.output.dense"}}[name]
    assert wrapped == expected


@pytest.mark.parametrize("name", VARIANTS)
def test_adapted_model_starts_equal_to_the_base_model(name, batch):
    base, info = tiny()
    base.eval()
    model, _ = adapt(name, copy.deepcopy(base), info, **({"drop_lowest": 1} if name == "adapter_d" else {}))
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, base(**inputs).logits)


@pytest.mark.parametrize("name", VARIANTS)
def test_a_few_steps_reduce_the_loss(name, batch):
    model, info = tiny()
    model, _ = adapt(name, model, info, **({"drop_lowest": 1} if name == "adapter_d" else {}))
    for n, p in model.named_parameters():   # as the runner does: the task head trains too
        p.requires_grad_(p.requires_grad or info.is_head(n))
    model.eval()                            # no dropout: the same batch gives the same loss until a step changes it
    losses = train_steps(model, batch, lr=1e-2)
    assert losses[-1] < 0.9 * losses[0]
    assert all(m.adapter.up.weight.abs().sum() > 0 for m in model.modules() if isinstance(m, Adapted))


@pytest.mark.parametrize("values,message", [
    ({"r": 0}, "r must be > 0, got 0"),
    ({"nonlinearity": "softplus"}, "nonlinearity must be one of relu, gelu, tanh, swish, got 'softplus'"),
    ({"layers": [-1]}, r"layers must be a non-empty list of indices ≥ 0 \(or null\), got \[-1\]"),
])
def test_bad_values_name_the_value(values, message):
    with pytest.raises(ConfigError, match=message):
        methods.build({"name": "adapter_p", **values})


def test_adapter_drop_must_leave_a_layer():
    with pytest.raises(ConfigError, match="drop_lowest must be an integer ≥ 0, got -1"):
        methods.build({"name": "adapter_d", "drop_lowest": -1})
    model, info = tiny()
    with pytest.raises(ConfigError, match="method.drop_lowest=2 leaves no layer with an adapter"):
        adapt("adapter_d", model, info, drop_lowest=2)


def test_a_model_yaml_without_the_sites_is_a_clear_error():
    model, info = tiny()
    info.modules.pop("ffn_out")
    with pytest.raises(ConfigError, match=r"model tiny-bert has no `modules.ffn_out` in its yaml"):
        adapt("adapter_p", model, info)


@pytest.mark.parametrize("name", VARIANTS)
def test_runs_end_to_end_and_records_the_count(name, tiny_overrides, tmp_path):
    extra = ["method.drop_lowest=1"] if name == "adapter_d" else []
    record = run(compose_cfg(*tiny_overrides, f"method={name}", "method.r=4", *extra), tmp_path)
    assert record["status"] == "completed" and record["method"] == name
    n_adapters, n_norms = {"adapter_h": (4, 4), "adapter_p": (2, 0), "adapter_l": (2, 2), "adapter_d": (1, 0)}[name]
    assert record["params"]["trainable_no_head"] == paper_count(n_adapters, n_norms, D, 4)
    assert record["params"]["trainable"] == record["params"]["trainable_no_head"] + 32 * 32 + 32 + 32 * 2 + 2


def test_tiny_roberta_adapters_start_at_the_base_model(batch):
    base, info = tiny("tiny-roberta")
    base.eval()
    model, _ = adapt("adapter_h", copy.deepcopy(base), info)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs).logits, base(**inputs).logits)


@pytest.mark.parametrize("model_name", ["tiny-gpt2", "tiny-llama"])
@pytest.mark.parametrize("name", VARIANTS)
def test_decoders_start_at_the_base_model_and_count_their_own_norms(name, model_name):
    from harness.models.causal_lm import load_causal_lm

    mcfg = OmegaConf.to_container(compose_cfg(f"model={model_name}").model, resolve=True)
    torch.manual_seed(0)
    base, info = load_causal_lm(mcfg).eval(), ModelInfo.from_cfg(mcfg)
    model, cfg = adapt(name, copy.deepcopy(base), info, r=4, **({"drop_lowest": 1} if name == "adapter_d" else {}))
    ids = torch.randint(1000, 30000, (2, 7))
    with torch.no_grad():
        assert torch.equal(model.eval()(input_ids=ids).logits, base(input_ids=ids).logits)
    n_adapters = {"adapter_h": 2 * L, "adapter_p": L, "adapter_l": L, "adapter_d": L - 1}[name]
    # GPT-2's LayerNorms hold 2·d each (the paper's 2·L̂_LN·d); Llama's RMSNorms only a weight, d each
    norm_size = 2 * D if model_name == "tiny-gpt2" else D
    own = 2 * D * n_adapters if name == "adapter_l" else 0
    model_norms = 2 * L * norm_size if name == "adapter_h" else 0
    assert trainable_no_head(model, info) == paper_count(n_adapters, 0, D, 4) + own + model_norms
    assert methods.REGISTRY[name].count(cfg, info, model) == trainable_no_head(model, info)
