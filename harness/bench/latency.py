"""`harness-bench latency`: forward-pass latency of adapted models side by side, the paper's Table 1 (Hu et al. 2022).

    harness-bench latency --model minilm --grid 1x128,8x128,32x128 --trials 50

All variants live in one process and are timed round-robin: for each batch × seq cell, `--warmup` untimed passes each,
then `--trials` rounds in which every variant runs one timed forward pass, in a new seeded random order each round so
that no variant is always timed first (torch.inference_mode; CUDA events on a
GPU, perf_counter on CPU), so drift from other load on the machine hits every variant alike. Reported: the median
(and mean, std) per variant and cell, and the overhead of the median over the base model's in %. Variants: `base`,
`lora_merged` / `lora_unmerged` (the `lora` method with its update merged into W₀ or not), and any registered method by
name (its conf/method yaml): adapter_h, adapter_p, adapter_l, adapter_d, prefix_embed, prefix_layer. A prefix
method feeds `seq - prefix_positions` text tokens, so its total sequence is `seq` too: the prefix takes positions
from the text (paper §3). Writes JSON (`--out`) and a Markdown table in Table 1's layout under reports/bench/.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from harness import catalog
from harness.bench.common import BenchError, adapt, load_model, model_config
from harness.stats import bootstrap_interval

REPORTS = Path(__file__).resolve().parents[2] / "reports" / "bench"
VARIANTS = ["base", "lora_merged", "lora_unmerged", "adapter_h", "adapter_p", "adapter_l", "adapter_d",
            "prefix_embed", "prefix_layer"]
PAPER_GRID, CPU_GRID = "32x512,16x256,1x128", "1x128,8x128,32x128"
# The variants that are not a method of their own; a method's variant is labelled by its yaml (harness/catalog.py).
LABELS = {"base": "Base (FT)", "lora_merged": "LoRA merged", "lora_unmerged": "LoRA unmerged"}


def label(variant: str) -> str:
    """Markdown: a method's `^X` as a superscript, as the report prints it."""
    base, _, sup = catalog.method_label(variant).partition("^")
    return LABELS.get(variant) or base + (f"<sup>{sup}</sup>" if sup else "")


def parse_grid(text: str) -> list[tuple[int, int]]:
    cells = []
    for cell in text.split(","):
        try:
            batch, seq = (int(x) for x in cell.lower().split("x"))
        except ValueError:
            raise BenchError(f"--grid: {cell!r} is not BATCHxSEQ (e.g. 8x128)") from None
        if batch <= 0 or seq <= 0:
            raise BenchError(f"--grid: batch and seq must be > 0, got {cell!r}")
        cells.append((batch, seq))
    return cells


def build_variant(name: str, base, info, stack: contextlib.ExitStack):
    """(model, trainable params without the head) for one variant; raises LookupError to skip it."""
    import methods

    if name == "base":
        return base, 0
    method_name = "lora" if name.startswith("lora_") else name
    if method_name not in methods.names():
        raise LookupError(f"method {method_name!r} is not registered")
    model, method, cfg = adapt(copy.deepcopy(base), info, method_name)
    params = info.count_params(model)["trainable_no_head"]
    if name == "lora_merged":
        stack.enter_context(method.evaluating(model, cfg))   # merged for the whole measurement
    return model.eval(), params


def timer(device):
    import torch

    if device.type == "cuda":
        def run(fn) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end)
    else:
        def run(fn) -> float:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
    return run


def measure(models: dict, batch: int, seq: int, trials: int, warmup: int, device, seed: int = 0) -> dict[str, list]:
    """Per variant, `trials` forward-pass times in ms on a random batch × seq input, round-robin over the variants."""
    import torch

    from methods.prefix import prefix_positions

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, seq), generator=g).to(device)
    inputs = {}
    for name, model in models.items():
        n = seq - prefix_positions(model)
        if n < 1:
            raise SystemExit(f"seq {seq} leaves no text token beside the {prefix_positions(model)} prefix positions of {name}")
        inputs[name] = {"input_ids": ids[:, :n], "attention_mask": torch.ones_like(ids[:, :n])}
    run = timer(device)
    times = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():
            for _ in range(warmup):
                model(**inputs[name])
        order = list(models)
        shuffle = random.Random(seed)
        for _ in range(trials):
            shuffle.shuffle(order)  # each round in a new order: no variant always runs first (or after the same one)
            for name in order:
                model = models[name]
                times[name].append(run(lambda: model(**inputs[name])))
    return times


def markdown(rows: list[dict], meta: dict) -> str:
    cells = list(dict.fromkeys((r["batch"], r["seq"]) for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    at = {(r["variant"], r["batch"], r["seq"]): r for r in rows}
    lines = [f"### Inference latency of one forward pass, {meta['model']} on {meta['device_name']} "
             f"(median of {meta['trials']} trials ± std, ms; overhead over the base model)", "",
             "| Batch size | " + " | ".join(str(b) for b, _ in cells) + " |",
             "|---|" + "---|" * len(cells),
             "| Sequence length | " + " | ".join(str(s) for _, s in cells) + " |"]
    for v in variants:
        first = at[(v, *cells[0])]
        row_label = f"{label(v)} (|Θ| = {first['params']:,}" + (
            f", {first['prefix_positions']} prefix positions)" if first.get("prefix_positions") else ")")
        out = []
        for b, s in cells:
            r = at[(v, b, s)]
            extra = "" if v == "base" else f" ({r['overhead_pct']:+.1f}%)"
            out.append(f"{r['latency_ms_median']:.2f} ±{r['latency_ms_std']:.2f}{extra}")
        lines.append(f"| {row_label} | " + " | ".join(out) + " |")
    lines += ["", "Paired overhead (median over rounds of variant / base time in the same round, %):", "",
              "| Variant | " + " | ".join(f"{b}×{s}" for b, s in cells) + " |", "|---|" + "---|" * len(cells)]
    lines += [f"| {label(v)} | " + " | ".join(f"{at[(v, b, s)]['overhead_pct_paired']:+.1f}" for b, s in cells) + " |"
              for v in variants if v != "base"]
    lines += ["", f"Command: `{meta['command']}`", f"torch {meta['torch']}, {meta['threads']} threads, "
              f"{meta['warmup']} warm-up passes per variant and cell, variants timed round-robin in one process "
              "(a new random order each round)."]
    if meta["skipped"]:
        lines.append("Skipped: " + "; ".join(f"{s['variant']} ({s['reason']})" for s in meta["skipped"]) + ".")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm", help="a harness/conf/model yaml (default: minilm)")
    p.add_argument("--grid", default=None, help=f"BATCHxSEQ cells (default: {PAPER_GRID} on CUDA, {CPU_GRID} on CPU)")
    p.add_argument("--trials", type=int, default=50, help="timed rounds per cell, every variant once a round (default: 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed passes per variant and cell (default: 5)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma list: base, lora_merged, lora_unmerged or a method name (default: all of them)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA when available (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="JSON file (default: reports/bench/latency_<model>_<device>.json)")
    p.add_argument("--md", default=None, help="Markdown file (default: the JSON path with .md)")
    return p


def rows_for_cell(models: dict, params: dict, times: dict, batch: int, seq: int) -> list[dict]:
    """One row per variant: median, mean, std, min, and the overhead over the base model, plain and paired."""
    from methods.prefix import prefix_positions

    base_times = times["base"]
    base_median = statistics.median(base_times)
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        # Paired: the median over rounds of this variant's time / the base model's in the same round, which cancels
        # load that drifts between rounds (a shared machine); the headline overhead uses the medians.
        ratios = np.array([t / b for t, b in zip(ts, base_times)])
        paired = float(np.median(ratios))
        # its 95 % percentile-bootstrap interval over rounds (harness/stats.py): whether a small overhead is noise
        ci = bootstrap_interval(lambda idx: float(np.median(ratios[idx])), len(ratios)) if len(ratios) > 1 else None
        rows.append({"variant": name, "batch": batch, "seq": seq, "prefix_positions": prefix_positions(models[name]),
                     "params": params[name], "latency_ms_median": round(median, 4),
                     "latency_ms_mean": round(statistics.fmean(ts), 4),
                     "latency_ms_std": round(statistics.stdev(ts), 4) if len(ts) > 1 else 0.0,
                     "latency_ms_min": round(min(ts), 4),
                     "overhead_pct": round(100 * (median / base_median - 1), 2),
                     "overhead_pct_paired": round(100 * (paired - 1), 2),
                     "overhead_pct_paired_low": round(100 * (ci["low"] - 1), 2) if ci else None,
                     "overhead_pct_paired_high": round(100 * (ci["high"] - 1), 2) if ci else None, "trials": len(ts),
                     "times_ms": [round(t, 4) for t in ts]})
    return rows


def measure_grid(args, base, info, device, grid) -> tuple[list[dict], list[dict]]:
    """(rows, skipped variants) over the grid, every variant built once from the same base model."""
    from harness.errors import HarnessError

    rows, skipped = [], []
    with contextlib.ExitStack() as stack:
        models, params = {}, {}
        for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
            try:
                models[name], params[name] = build_variant(name, base, info, stack)
            except (LookupError, HarnessError) as exc:   # not registered, or the model yaml lacks what it needs
                skipped.append({"variant": name, "reason": str(exc)})
        if "base" not in models:
            raise SystemExit("--variants must include base (overheads are relative to it)")
        for batch, seq in grid:
            print(f"[latency] {batch}x{seq}: {len(models)} variants × {args.trials} trials", file=sys.stderr)
            times = measure(models, batch, seq, args.trials, args.warmup, device)
            rows += rows_for_cell(models, params, times, batch, seq)
    return rows, skipped


def main_latency(argv=None) -> int:
    import torch

    args = parser().parse_args(argv)
    if args.trials < 1 or args.warmup < 0:
        raise SystemExit(f"--trials must be ≥ 1 and --warmup ≥ 0, got {args.trials} and {args.warmup}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and device.type != "cuda":
        raise SystemExit("--device cuda but no CUDA device is available")
    grid = parse_grid(args.grid or (PAPER_GRID if device.type == "cuda" else CPU_GRID))
    model_config(args.model)   # bad options: BenchError, one line and exit 2 (harness/bench/__init__.py)
    base, info = load_model(args.model)
    rows, skipped = measure_grid(args, base.to(device).eval(), info, device, grid)
    meta = {"model": args.model, "device": str(device), "trials": args.trials, "warmup": args.warmup,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU ({platform.processor() or platform.machine()})",
            "threads": torch.get_num_threads(), "torch": torch.__version__, "skipped": skipped,
            "command": "harness-bench latency " + shlex.join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out) if args.out else REPORTS / f"latency_{args.model}_{device.type}.json"
    md = Path(args.md) if args.md else out.with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    md.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    md.write_text(markdown(rows, meta))
    print(md.read_text())
    print(f"wrote {out} and {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main_latency())
