"""`harness-bench train`: training-step cost of several methods on one model and batch shape, side by side.

Each method runs in its own fresh Python process, measured the same way: a fixed random batch of `batch × seq` tokens
(no padding), `--warmup` untimed steps, the median of `--steps` timed optimiser steps (forward, backward, AdamW step),
then one more step whose peak allocated tensor bytes are counted exactly (harness/bench/memory.py: the CUDA allocator,
or torch's profiler on CPU; the same for a given batch, run after run) beside the process's peak RSS (which wanders).
This repeats for `--rounds` rounds (default 5), every method once a round, in a new random order each round (drawn
from `--seed`, and recorded), so that no method always runs first or after the same one. Reported per method: the
median over rounds and its spread, and the paired ratio to `--reference` (default BitFit): the median, min and max
over rounds of the method's time / the reference's time in the same round, which cancels load that drifts between
rounds on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.bench.common import (BENCH_DIR, BenchError, adapt, finish, load_model, markdown_table, model_config,
                                  paired, summary, verdict)

TARGETS = {"lora": {"step": 1.03, "allocated": 1.05}}   # issue 18: LoRA within 3 % of BitFit's step, 5 % of its memory


def measure(model_name: str, method_name: str, batch: int, seq: int, steps: int, warmup: int, threads: int,
            overrides: list[str], device: str = "auto") -> dict:
    """One method, in this process: returns its row."""
    import torch

    from harness.bench.memory import step_peak_bytes
    from harness.train.setup import param_groups, peak_memory_bytes

    torch.set_num_threads(threads)
    base, info = load_model(model_name)
    model = adapt(base, info, method_name, overrides)[0]
    info.train_head(model)
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    model.to(dev).train()
    vocab = model.config.vocab_size if hasattr(model, "config") else 30522
    g = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(min(1000, vocab - 1), vocab, (batch, seq), generator=g).to(dev),
              "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=dev),
              "labels": torch.randint(0, 2, (batch,), generator=g).to(dev)}
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-5)

    def step():
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rss_loaded = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = peak_memory_bytes(dev)   # before the profiled step: the profiler's own buffers are not the method's
    rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    allocated = step_peak_bytes(step, model, optimizer, inputs, dev)
    return {"method": method_name, "model": model_name, "batch": batch, "seq": seq, "threads": threads,
            "device": str(dev), "step_seconds_median": statistics.median(times), "step_seconds_min": min(times),
            "step_seconds_max": max(times), "steps": steps, "peak_memory_bytes": peak, "peak_rss_bytes": rss,
            "peak_allocated_bytes": allocated, "memory_after_load_bytes": rss_loaded if dev.type == "cpu" else None,
            **info.count_params(model)}


def _child(args, method: str) -> dict:
    cmd = [sys.executable, "-m", "harness.bench.train", "--child", args.model, "--batch", str(args.batch), "--seq",
           str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--device", args.device, "--methods", method, *sum((["--set", s] for s in args.set), [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method}: benchmark process failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_rounds(args, names: list[str]) -> tuple[dict[str, list[dict]], list[list[str]]]:
    """({method: its row of each round}, each round's order): every method once a round, each in a fresh process,
    in a new random order each round."""
    per_method: dict[str, list[dict]] = {m: [] for m in names}
    shuffle, orders = random.Random(args.seed), []
    for round_ in range(args.rounds):
        order = list(names)
        shuffle.shuffle(order)
        orders.append(order)
        for name in order:
            row = _child(args, name)
            per_method[name].append(row)
            print(f"[round {round_ + 1}/{args.rounds}] {name}: {1000 * row['step_seconds_median']:.1f} ms/step, "
                  f"allocated {row['peak_allocated_bytes'] / 2**20:.1f} MB, RSS {row['peak_rss_bytes'] / 2**20:.0f} MB",
                  file=sys.stderr, flush=True)
    return per_method, orders


def aggregate(per_method: dict[str, list[dict]], reference: str) -> list[dict]:
    """One row per method: medians over rounds, their spread, and paired ratios to the reference method."""
    ref = per_method[reference]
    rows = []
    for name, runs in per_method.items():
        row = {k: v for k, v in runs[0].items() if k not in ("step_seconds_min", "step_seconds_max")}
        steps = [r["step_seconds_median"] for r in runs]
        allocated = [r["peak_allocated_bytes"] for r in runs]
        rss = [r["peak_rss_bytes"] for r in runs]
        row.update({
            "rounds": len(runs), "step_seconds_median": statistics.median(steps), "step_seconds": summary(steps),
            "step_ratio": paired(steps, [r["step_seconds_median"] for r in ref]),
            "peak_allocated_bytes": int(statistics.median(allocated)), "peak_allocated": summary(allocated),
            "allocated_ratio": paired(allocated, [r["peak_allocated_bytes"] for r in ref]),
            "peak_rss_bytes": int(statistics.median(rss)), "peak_rss": summary(rss),
            "rss_ratio": paired(rss, [r["peak_rss_bytes"] for r in ref]),
            "peak_memory_bytes": int(statistics.median(r["peak_memory_bytes"] for r in runs))})
        rows.append(row)
    return rows


def targets(rows: list[dict], reference: str) -> list[dict]:
    """The issue's targets for the methods that have one, against BitFit (only when BitFit is the reference)."""
    if reference != "bitfit":
        return []
    found = []
    for row in rows:
        for what, limit in TARGETS.get(row["method"], {}).items():
            value = row["step_ratio" if what == "step" else "allocated_ratio"]["median"]
            found.append({"method": row["method"], "what": f"{what} × {reference}", "value": round(value, 4),
                          "target": f"≤ {limit}", "verdict": verdict(value, limit)})
    return found


def markdown(rows: list[dict], meta: dict) -> str:
    first, ref = rows[0], meta["reference"]

    def ratio(r):
        return f"{r['median']:.3f} [{r['min']:.3f}–{r['max']:.3f}]"

    table = [[r["method"], f"{1000 * r['step_seconds_median']:.1f}", f"{r['step_seconds']['spread_pct']:.1f}",
              ratio(r["step_ratio"]), f"{r['peak_allocated_bytes'] / 2**20:.1f}", ratio(r["allocated_ratio"]),
              f"{r['peak_rss_bytes'] / 2**20:.0f} [{r['peak_rss']['min'] / 2**20:.0f}–{r['peak_rss']['max'] / 2**20:.0f}]",
              ratio(r["rss_ratio"]), f"{r['trainable']:,}", f"{r['trainable_no_head']:,}"] for r in rows]
    lines = [f"# Training-step cost: {first['model']}, batch {first['batch']} × seq {first['seq']}, {first['device']}, "
             f"{first['threads']} threads, {meta['rounds']} rounds", "", f"Command: `{meta['command']}`", "",
             *markdown_table(["method", "step (ms, median)", "spread (%)", f"× {ref} [min–max]",
                              "peak allocated (MB)", f"× {ref} [min–max]", "peak RSS (MB) [min–max]",
                              f"× {ref} [min–max]", "trainable", "trainable w/o head"], table), ""]
    lines += [f"- {t['method']}: {t['what']} = {t['value']:.3f} (target {t['target']}): **{t['verdict']}**"
              for t in meta["targets"]]
    lines += ["", f"{meta['rounds']} rounds; each round runs every method once, each in a fresh process, in a new random "
              f"order (seed {meta['seed']}; orders: " + "; ".join(", ".join(o) for o in meta["orders"]) + "). "
              f"Per round and method: the median of {first['steps']} timed steps after {meta['warmup']} warm-up steps. "
              "Step: the median over rounds; spread: (max − min) / median over rounds; × reference: the median "
              "[min–max] over rounds of the paired ratio (this method / the reference in the same round).",
              "Peak allocated: tensor bytes at the peak of one training step (" + (
                  "torch.cuda.max_memory_allocated" if first["device"].startswith("cuda") else
                  "live tensors before the step + torch.profiler's allocation events during it") + "), the same for "
              "a given batch; peak RSS: the method's process (allocator caches, libraries; it wanders between runs).",
              f"Machine: {meta['machine']}."]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="a harness/conf/model yaml (default: minilm)")
    p.add_argument("--methods", default="full_ft,bitfit,lora,lora_peft",
                   help="comma list of method names (default: full_ft,bitfit,lora,lora_peft)")
    p.add_argument("--reference", default="bitfit", help="the method the ratios are to (default: bitfit)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--seq", type=int, default=128, help="sequence length, no padding (default: 128)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per process (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--rounds", type=int, default=5, help="rounds, every method once a round (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rounds' random orders (default: 0)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available (default: auto)")
    p.add_argument("--set", action="append", default=[], help="method override, e.g. --set r=16 (all methods)")
    p.add_argument("--out", default=None, help="JSON path (default reports/bench/train_<model>_b<batch>_s<seq>.json)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def main_train(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.methods, args.batch, args.seq, args.steps, args.warmup, args.threads,
                                 args.set, args.device)))
        return 0
    model_config(args.model)   # a bad --model: BenchError, one line and exit 2 (harness/bench/__init__.py)
    names = list(dict.fromkeys(m for m in args.methods.split(",") if m))
    if args.reference not in names:
        raise BenchError(f"--reference {args.reference!r} is not among --methods ({', '.join(names)})")
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        raise BenchError(f"--rounds and --steps must be ≥ 1 and --warmup ≥ 0, got {args.rounds}, {args.steps}, "
                         f"{args.warmup}")
    per_method, orders = run_rounds(args, names)
    rows = aggregate(per_method, args.reference)
    out = Path(args.out or BENCH_DIR / f"train_{args.model}_b{args.batch}_s{args.seq}.json")
    return finish("train", argv, out.parent, out.stem,
                  {"rounds": args.rounds, "seed": args.seed, "orders": orders, "reference": args.reference,
                   "warmup": args.warmup, "targets": targets(rows, args.reference)},
                  {"rows": rows, "per_round": per_method}, lambda meta: markdown(rows, meta))


if __name__ == "__main__":
    sys.exit(main_train())
