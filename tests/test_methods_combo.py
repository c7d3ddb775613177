"""Methods combined (method=combo): both members train, the count is the sum of theirs, merged evaluation is exact for
the LoRA part, the budget knob is refused, and a combined run completes."""
import pytest
import torch

import methods
from harness.errors import ConfigError
from harness.runner import run
from tests.conftest import compose_cfg
from tests.methods_util import adapt, tiny_classifier, trainable_no_head

MEMBERS = [{"name": "lora", "r": 4, "targets": ["q", "v"]}, {"name": "prefix_embed", "l_p": 5}]


def test_the_combined_count_is_the_sum_of_the_members_and_both_train():
    model, info = tiny_classifier()
    separate = sum(trainable_no_head(adapt(m["name"], tiny_classifier()[0], info, **{k: v for k, v in m.items()
                                                                                     if k != "name"})[0], info)
                   for m in MEMBERS)
    combined, cfg = adapt("combo", model, info, members=MEMBERS)
    assert trainable_no_head(combined, info) == separate == 2 * 2 * 4 * (32 + 32) + 5 * 32
    assert methods.REGISTRY["combo"].count(cfg, info, tiny_classifier()[0]) == separate
    trained = {n.split(".")[-1] for n, p in combined.named_parameters() if p.requires_grad and not info.is_head(n)}
    assert {"lora_A", "lora_B", "embeds"} <= trained


def test_merged_evaluation_is_exact_for_the_lora_part():
    model, info = tiny_classifier()
    model, cfg = adapt("combo", model, info, members=MEMBERS)
    with torch.no_grad():
        for p in (p for n, p in model.named_parameters() if n.endswith("lora_B")):
            p.normal_(0, 0.1)
    model.eval()
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)}
    with torch.no_grad():
        unmerged = model(**batch).logits
        with methods.REGISTRY["combo"].evaluating(model, cfg):
            merged = model(**batch).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_bad_combinations_and_budgets_are_refused():
    with pytest.raises(ConfigError, match="members must list at least two methods"):
        methods.build({"name": "combo", "members": [{"name": "lora"}]})
    with pytest.raises(ConfigError, match="method.budget needs a method with a size parameter; combo has none"):
        methods.build({"name": "combo", "budget": 1000})


def test_a_combined_run_completes(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=combo", "trainer.epochs=1"), tmp_path)
    assert record["status"] == "completed" and record["params"]["trainable_no_head"] == 2 * 2 * 8 * 64 + 16 * 32
    assert (tmp_path / "adapter" / "lora" / "adapter.safetensors").is_file()
