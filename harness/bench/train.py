"""`harness-bench train`: training-step cost of several methods on one model and batch shape, side by side.

Each method runs in its own fresh Python process (so peak RSS is that method's alone) and is measured the same way:
a fixed random batch of `batch × seq` tokens (no padding), `--warmup` untimed steps, then the median of `--steps`
timed optimiser steps (forward, backward, AdamW step). With `--rounds R` the methods run round-robin R times and the
median over rounds is reported, which evens out drift from other load on the machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.bench.common import adapt, load_model, model_config


def measure(model_name: str, method_name: str, batch: int, seq: int, steps: int, warmup: int, threads: int,
            overrides: list[str], device: str = "auto") -> dict:
    """One method, in this process: returns its row."""
    import torch

    from harness.train.loop import param_groups, peak_memory_bytes

    torch.set_num_threads(threads)
    base, info = load_model(model_name)
    model = adapt(base, info, method_name, overrides)[0]
    info.train_head(model)
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    model.to(dev).train()
    vocab = model.config.vocab_size if hasattr(model, "config") else 30522
    g = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(1000, vocab, (batch, seq), generator=g).to(dev),
              "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=dev),
              "labels": torch.randint(0, 2, (batch,), generator=g).to(dev)}
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-5)
    rss_loaded = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    params = info.count_params(model)
    return {"method": method_name, "model": model_name, "batch": batch, "seq": seq, "threads": threads,
            "device": str(dev), "step_seconds_median": statistics.median(times), "step_seconds_min": min(times),
            "step_seconds_max": max(times), "steps": steps, "peak_memory_bytes": peak_memory_bytes(dev),
            "memory_after_load_bytes": rss_loaded if dev.type == "cpu" else None, **params}


def _child(args) -> dict:
    cmd = [sys.executable, "-m", "harness.bench.train", "--child", args.model, "--batch", str(args.batch), "--seq",
           str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--device", args.device, "--methods", args.method_now, *sum((["--set", s] for s in args.set), [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{args.method_now}: benchmark process failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], command: str) -> str:
    ref = next((r for r in rows if r["method"] == "bitfit"), None)
    lines = [f"# Training-step cost: {rows[0]['model']}, batch {rows[0]['batch']} × seq {rows[0]['seq']}, "
             f"{rows[0]['device']}, {rows[0]['threads']} threads", "", f"Command: `{command}`", "",
             "| method | step (ms, median) | × BitFit | peak memory (MB) | × BitFit | trainable | trainable w/o head |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        step_x = f"{r['step_seconds_median'] / ref['step_seconds_median']:.3f}" if ref else "–"
        mem_x = f"{r['peak_memory_bytes'] / ref['peak_memory_bytes']:.3f}" if ref else "–"
        lines.append(f"| {r['method']} | {1000 * r['step_seconds_median']:.1f} | {step_x} | "
                     f"{r['peak_memory_bytes'] / 2**20:.0f} | {mem_x} | {r['trainable']:,} | {r['trainable_no_head']:,} |")
    rounds = rows[0].get("rounds", 1)
    lines += ["", f"Median of {rows[0]['steps']} timed steps after warm-up, each method in a fresh process"
              + (f"; median over {rounds} round-robin rounds" if rounds > 1 else "") + ". Peak memory: "
              + ("peak RSS of the method's process." if rows[0]["device"] == "cpu" else "torch.cuda.max_memory_allocated."),
              f"Machine: {platform.machine()}, {platform.processor() or platform.platform()}."]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="a harness/conf/model yaml (default: minilm)")
    p.add_argument("--methods", default="full_ft,bitfit,lora,lora_peft",
                   help="comma list of method names (default: full_ft,bitfit,lora,lora_peft)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--seq", type=int, default=128, help="sequence length, no padding (default: 128)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (≥ 20 recommended; default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--rounds", type=int, default=1, help="round-robin rounds; the median over rounds (default: 1)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available (default: auto)")
    p.add_argument("--set", action="append", default=[], help="method override, e.g. --set r=16 (all methods)")
    p.add_argument("--out", default=None, help="JSON path (default reports/bench/train_<model>_b<batch>_s<seq>.json)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def run_rounds(args, names: list[str]) -> list[dict]:
    """Every method once per round, each in a fresh process; per method, the median over rounds."""
    per_method: dict[str, list[dict]] = {m: [] for m in names}
    for round_ in range(args.rounds):
        for name in names:
            args.method_now = name
            row = _child(args)
            per_method[name].append(row)
            print(f"[round {round_ + 1}] {name}: {1000 * row['step_seconds_median']:.1f} ms/step, "
                  f"peak {row['peak_memory_bytes'] / 2**20:.0f} MB, trainable {row['trainable']:,}", flush=True)
    rows = []
    for name in names:
        runs = per_method[name]
        row = dict(runs[0])
        row["step_seconds_median"] = statistics.median(r["step_seconds_median"] for r in runs)
        row["peak_memory_bytes"] = int(statistics.median(r["peak_memory_bytes"] for r in runs))
        row["rounds"] = args.rounds
        rows.append(row)
    return rows


def main_train(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.methods, args.batch, args.seq, args.steps, args.warmup, args.threads,
                                 args.set, args.device)))
        return 0
    model_config(args.model)   # a bad --model: BenchError, one line and exit 2 (harness/bench/__init__.py)
    rows = run_rounds(args, [m for m in args.methods.split(",") if m])
    out = Path(args.out or f"reports/bench/train_{args.model}_b{args.batch}_s{args.seq}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "harness-bench train " + shlex.join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(_table(rows, command))
    print(_table(rows, command))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main_train())
