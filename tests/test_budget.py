"""The budget knob (`method.budget=<params>`): the size value whose parameter count (without the head) is nearest."""
import dataclasses
import json

import pytest

import methods
from harness.errors import ConfigError
from harness.runner import run
from tests.conftest import compose_cfg
from tests.methods_util import tiny_classifier as tiny, trainable_no_head


@pytest.mark.parametrize("name,budget,size,count", [
    ("adapter_p", 1000, 7, 2 * (2 * 32 * 7 + 7 + 32)),            # r=7: 974, r=8: 1104
    ("adapter_h", 5000, 18, 4 * (2 * 32 * 18 + 18 + 32) + 2 * 4 * 32),  # r=18: 5064, r=17: 4804
    ("prefix_layer", 300, 5, 2 * 32 * 5),                          # l_p=5: 320, l_p=4: 256
    ("prefix_embed", 48, 1, 32),                                   # a tie (32 / 64): the smaller
    ("prefix_embed", 5, 1, 32),                                    # below the smallest size: the smallest
])
def test_budget_picks_the_nearest_size(name, budget, size, count, caplog):
    model, info = tiny()
    method, cfg = methods.build({"name": name, "budget": budget})
    cfg = method.sized(cfg, info, model)
    model = method.apply(model, cfg, info)
    assert getattr(cfg, methods.REGISTRY[name].size_param) == size
    assert trainable_no_head(model, info) == count
    below = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if count > 2 * budget:  # a budget the method cannot meet is said, not silently rounded up
        assert below == [f"method.budget={budget} is below {name}'s smallest size: l_p=1 has {count} trainable "
                         "parameters (the run uses it; the record's params say so)"]
    else:
        assert below == []


def test_bisection_agrees_with_a_scan():
    model, info = tiny()
    method = methods.REGISTRY["adapter_h"]
    _, cfg = methods.build({"name": "adapter_h"})
    counts = {r: method.count(dataclasses.replace(cfg, r=r), info, model) for r in range(1, 80)}
    for budget in range(100, counts[79], 97):
        best = min(counts, key=lambda r: (abs(counts[r] - budget), r))
        assert methods.fit_budget(method, cfg, info, model, budget) == best


def test_without_a_count_function_the_knob_counts_a_copy(monkeypatch):
    model, info = tiny()
    monkeypatch.setitem(methods.REGISTRY, "adapter_p_uncounted",
                        dataclasses.replace(methods.REGISTRY["adapter_p"], name="adapter_p_uncounted", count=None))
    method, cfg = methods.build({"name": "adapter_p_uncounted", "budget": 1000})
    cfg = method.sized(cfg, info, model)
    model = method.apply(model, cfg, info)
    assert cfg.r == 7 and trainable_no_head(model, info) == 974


def test_lora_follows_the_contract():
    methods.names()
    lora = methods.REGISTRY.get("lora")
    if lora is None or not lora.size_param:
        pytest.skip("lora is not registered with size_param yet")
    model, info = tiny()
    method, cfg = methods.build({"name": "lora", "budget": 1000, "targets": ["q", "v"]})
    cfg = method.sized(cfg, info, model)
    model = method.apply(model, cfg, info)
    assert cfg.r == 4 and trainable_no_head(model, info) == 2 * 4 * 32 * 4   # 2·L̂·d·r, L̂ = 2 layers × (q, v)


@pytest.mark.parametrize("values,message", [
    ({"name": "bitfit", "budget": 1000}, r"method.budget needs a method with a size parameter; bitfit has none "
                                         r"\(methods with one: .*adapter_h.*prefix_layer"),
    ({"name": "adapter_p", "budget": 0}, "method.budget must be a positive integer \\(parameters\\), got 0"),
    ({"name": "adapter_p", "budget": 12.5}, "method.budget must be a positive integer \\(parameters\\), got 12.5"),
])
def test_bad_budgets_fail_at_build(values, message):
    with pytest.raises(ConfigError, match=message):
        methods.build(values)


def test_budget_runs_end_to_end(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=adapter_p", "method.budget=1000", "trainer.epochs=1"), tmp_path)
    assert record["status"] == "completed" and record["params"]["trainable_no_head"] == 974
    assert record["config"]["method"]["budget"] == 1000
    # the record holds one r, the one the budget picked and that trained (tiny-bert L=2, d=32: 2·(2·32·r + r + 32) =
    # 974 at r=7), not the yaml's 16 beside it
    assert record["config"]["method"]["r"] == 7 and "method_config" not in record
    assert json.loads((tmp_path / "run.json").read_text())["config"]["method"]["r"] == 7


def test_sizing_returns_a_new_config_and_leaves_the_built_one_alone():
    model, info = tiny()
    method, cfg = methods.build({"name": "adapter_p", "budget": 1000})
    sized = method.sized(cfg, info, model)
    assert (cfg.r, sized.r) == (16, 7) and sized is not cfg


def test_size_keys_come_from_the_registry():
    """Report labels and W&B tags read a run's size setting through the registry's size_param, the one source."""
    assert methods.size_key({"name": "lora", "r": 8}) == "r"
    assert methods.size_key({"name": "prefix_layer", "l_p": 16}) == "l_p"
    assert methods.size_key({"name": "ft_top2", "top": 2}) == "top"
    assert methods.size_key({"name": "adapter_h", "r": 8, "budget": 5000}) == "budget"
    assert methods.size_key({"name": "full_ft"}) is None and methods.size_key({"name": "bitfit"}) is None
