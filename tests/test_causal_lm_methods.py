"""Methods on causal LMs, checked where a user meets them: a method that would train nothing outside the head is
refused at start-up, a GPT-2 classifier trains its own head, a peft export of GPT-2's Conv1D says fan_in_fan_out."""
import json

import pytest
import torch

from harness.errors import HarnessError
from harness.runner import run
from methods import lora, lora_io
from tests.conftest import compose_cfg
from tests.methods_util import adapt, tiny_classifier


def test_bitfit_on_a_model_without_biases_fails_at_start_up_with_one_line(tiny_overrides, tmp_path, monkeypatch):
    import harness.runner

    monkeypatch.setattr(harness.runner.tasks, "build", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(HarnessError) as caught:
        run(compose_cfg(*tiny_overrides, "model=tiny-llama", "method=bitfit"), tmp_path)
    assert str(caught.value) == ("method bitfit trains no parameter of model tiny-llama outside the task head (it has "
                                 "no bias terms); choose another method for this model")
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


def test_a_gpt2_classifier_trains_its_head(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "model=tiny-gpt2", "method=lora", "trainer.epochs=1"), tmp_path)
    params = record["params"]
    assert record["status"] == "completed" and params["trainable"] > params["trainable_no_head"] > 0
    assert params["trainable"] - params["trainable_no_head"] == 32 * 2   # score: d_model × 2 labels, no bias


def test_peft_export_of_gpt2_conv1d_says_fan_in_fan_out(tmp_path):
    model, info = tiny_classifier("tiny-gpt2")
    model, cfg = adapt("lora", model, info, targets=["attn.c_proj"])
    folder = lora_io.export_peft(model, cfg, info, tmp_path / "peft")
    assert json.loads((folder / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    assert lora.is_conv1d(model.transformer.h[0].attn.c_proj.base_layer)
    bert, bert_info = tiny_classifier("tiny-bert")
    bert, bert_cfg = adapt("lora", bert, bert_info)
    plain = lora_io.export_peft(bert, bert_cfg, bert_info, tmp_path / "bert")
    assert json.loads((plain / "adapter_config.json").read_text())["fan_in_fan_out"] is False
    assert torch.is_tensor(bert.bert.encoder.layer[0].attention.self.query.lora_A)
