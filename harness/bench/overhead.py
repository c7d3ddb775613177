"""`harness-bench overhead`: harness-run's training throughput against a bare PyTorch loop on the same examples.

    harness-bench overhead model=minilm task=glue/sst2 method=lora trainer.max_train_samples=2000 \
        trainer.max_eval_samples=64 --steps 60 --rounds 3

The arguments are harness-run's own overrides. Each round runs, in a new seeded random order, (a) `harness.runner.run`
on the composed config with `trainer.max_steps=--steps` (everything harness-run does: Accelerate, the seeded
resumable sampler, non-finite checks, the progress bar, the tracker, the run record), its throughput being the record's
`cost.tokens_per_second` (tokens / training seconds, evaluation and checkpoints excluded); and (b) a bare loop in the
same process on the same tokenised examples, in the same seeded order, with the same batch size, model and method
applied the same way, and the same maths (AdamW with the same parameter groups, the linear warm-up schedule, gradient
clipping): forward, backward, clip, step, zero_grad, nothing else. Reported: tokens/s of both (median over rounds),
the paired ratio harness / bare per round (median, min–max), and the target: within 5 % (ratio ≥ 0.95). `--warmup`
untimed rounds of both come first, so that what a process does once (first imports, W&B's first log, which sets up
its telemetry, ~0.1 s) is not charged to the first timed round; a run's own fixed costs (its record written after
the evaluation, W&B's logging every `trainer.log_every` steps) stay in its training seconds, as they do in any run.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.bench.common import (BENCH_DIR, BenchError, compose, composed, finish, markdown_table, paired, run_model,
                                  run_parts, summary, verdict)

TARGET = 0.95   # harness-run's throughput at least 95 % of the bare loop's (issue 18: within 5 %)


def harness_round(overrides: list[str], out_dir: Path) -> dict:
    """One harness-run, in-process: its record's training cost."""
    from harness.runner import run

    record = run(compose(overrides), out_dir)
    if record["status"] != "completed":
        raise BenchError(f"harness-run did not complete: {(record.get('error') or {}).get('message')}")
    cost = record["cost"]
    return {"tokens_per_second": cost["tokens_per_second"], "step_seconds_median": cost["step_seconds_median"],
            "steps": cost["steps"], "train_seconds": cost["train_seconds"]}


def bare_round(pipeline, checked, config: dict, steps: int) -> dict:
    """The bare loop: the same examples in the same seeded order, the same optimiser, schedule and clipping."""
    import torch

    from harness.train.sampler import ResumableShuffle
    from harness.train.setup import param_groups
    from harness.train.schedule import linear_warmup_decay

    tcfg, model = checked.trainer, run_model(pipeline, checked, config)[0].train()
    generator = torch.Generator().manual_seed(config["seed"])
    loader = torch.utils.data.DataLoader(pipeline.train, batch_size=tcfg.batch_size, generator=generator,
                                         sampler=ResumableShuffle(len(pipeline.train), generator),
                                         collate_fn=pipeline.collate)
    optimizer = torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr)
    scheduler = linear_warmup_decay(optimizer, round(tcfg.warmup_ratio * steps), steps)
    loss_fn = pipeline.loss_fn or (lambda m, batch: m(**batch).loss)
    trainable = [p for p in model.parameters() if p.requires_grad]
    times, tokens = [], 0
    t = time.perf_counter()
    while len(times) < steps:
        for batch in loader:
            loss_fn(model, batch).backward()
            torch.nn.utils.clip_grad_norm_(trainable, tcfg.max_grad_norm or float("inf"))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
            now = time.perf_counter()
            times.append(now - t)
            t = now
            if len(times) == steps:
                break
    return {"tokens_per_second": tokens / sum(times), "step_seconds_median": statistics.median(times),
            "steps": steps, "train_seconds": sum(times), "tokens": tokens}


def run_rounds(overrides: list[str], steps: int, rounds: int, seed: int, work: Path,
               warmup: int = 1) -> tuple[dict, list]:
    overrides = [*overrides, f"trainer.max_steps={steps}"]
    config = composed(overrides)
    pipeline, checked = run_parts(config, work / "bare")
    for i in range(warmup):   # untimed: what a process does once (first imports, W&B's first log, allocator growth)
        harness_round(overrides, work / f"warmup{i}")
        bare_round(pipeline, checked, config, steps)
    results, orders, shuffle = {"harness": [], "bare": []}, [], random.Random(seed)
    for round_ in range(rounds):
        order = ["harness", "bare"]
        shuffle.shuffle(order)
        orders.append(order)
        for side in order:
            found = (harness_round(overrides, work / f"run{round_}") if side == "harness"
                     else bare_round(pipeline, checked, config, steps))
            results[side].append(found)
            print(f"[round {round_ + 1}/{rounds}] {side}: {found['tokens_per_second']:.0f} tokens/s", file=sys.stderr)
    return results, orders


def result(results: dict) -> dict:
    harness = [r["tokens_per_second"] for r in results["harness"]]
    bare = [r["tokens_per_second"] for r in results["bare"]]
    ratio = paired(harness, bare)
    return {"harness_tokens_per_second": summary(harness), "bare_tokens_per_second": summary(bare),
            "ratio": ratio, "target": f"≥ {TARGET}", "verdict": verdict(ratio["median"], TARGET, at_most=False),
            "harness_step_seconds_median": statistics.median(r["step_seconds_median"] for r in results["harness"]),
            "bare_step_seconds_median": statistics.median(r["step_seconds_median"] for r in results["bare"])}


def markdown(found: dict, meta: dict) -> str:
    h, b, r = found["harness_tokens_per_second"], found["bare_tokens_per_second"], found["ratio"]
    rows = [["harness-run", f"{h['median']:.0f} [{h['min']:.0f}–{h['max']:.0f}]",
             f"{1000 * found['harness_step_seconds_median']:.1f}"],
            ["bare PyTorch loop", f"{b['median']:.0f} [{b['min']:.0f}–{b['max']:.0f}]",
             f"{1000 * found['bare_step_seconds_median']:.1f}"]]
    return "\n".join([
        f"# Harness overhead: harness-run vs a bare PyTorch loop, {meta['rounds']} rounds", "",
        f"Command: `{meta['command']}`", "",
        *markdown_table(["loop", "tokens/s (median [min–max])", "step (ms, median)"], rows), "",
        f"harness / bare throughput: **{r['median']:.3f}** [{r['min']:.3f}–{r['max']:.3f}] (paired per round; "
        f"target {found['target']}): **{found['verdict']}**", "",
        f"Each round runs both, in a new random order (seed {meta['seed']}; orders: "
        + "; ".join(", ".join(o) for o in meta["orders"]) + f"), {meta['steps']} training steps each, on "
        f"`{' '.join(meta['overrides'])}`, after {meta['warmup']} untimed round(s) of both. "
        f"Machine: {meta['machine']}."]) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", default=[], help="harness-run overrides (default: the harness's defaults: "
                                                           "model=minilm task=glue/sst2 method=lora)")
    p.add_argument("--steps", type=int, default=50, help="training steps per run (default: 50)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, both loops once a round (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rounds' random orders (default: 0)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds of both first (default: 1)")
    p.add_argument("--out", default=str(BENCH_DIR), help="output folder (default: reports/bench)")
    p.add_argument("--name", default="overhead", help="file stem (default: overhead)")
    return p


def main_overhead(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        raise BenchError(f"--steps and --rounds must be ≥ 1 and --warmup ≥ 0, got {args.steps}, {args.rounds} and "
                         f"{args.warmup}")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as work:
        results, orders = run_rounds(args.overrides, args.steps, args.rounds, args.seed, Path(work), args.warmup)
    found = result(results)
    return finish("overhead", argv, args.out, args.name, {"rounds": args.rounds, "steps": args.steps, "seed": args.seed,
                                                          "warmup": args.warmup, "orders": orders,
                                                          "overrides": args.overrides},
                  {"result": found, "per_round": results}, lambda meta: markdown(found, meta))


if __name__ == "__main__":
    sys.exit(main_overhead())
