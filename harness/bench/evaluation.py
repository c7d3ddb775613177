"""`harness-bench eval`: evaluation throughput, as a run evaluates: classification examples/s, decoded tokens/s.

    harness-bench eval --classify 'model=minilm task=glue/sst2' \
        --generate 'model=smollm2 task=e2e trainer.max_eval_samples=48 task.generation.num_beams=1'

Each part is a set of harness-run overrides. The task's pipeline is built as a run builds it (the same evaluation
split, subset and batch sizes), the model loaded with the method applied (seeded; untrained: the throughput does not
depend on the weights' values) and put in the method's evaluation context (merged LoRA, as a run evaluates). Then,
after `--warmup` untimed passes, `--repeats` timed passes: a classification pass is the run's own evaluator over the
whole evaluation set (examples/s); a generation pass is the run's decoding of every evaluation prompt
(harness/tasks/decoding.py: batches of similar length, left-padded, transformers' generate with its KV cache), whose
new tokens are counted up to and including each row's end-of-text (decoded tokens/s; items/s beside it).
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.bench.common import (BENCH_DIR, BenchError, composed, finish, markdown_table, run_model, run_parts,
                                  summary)


def counting(model, eos: int, pad: int, counter: dict):
    """Wrap `model.generate` so that each call adds its new tokens per row (up to and including the first EOS, padding
    after it not counted) to counter["tokens"]."""
    generate = model.generate

    def counted(*args, **kwargs):
        out = generate(*args, **kwargs)
        width = kwargs["input_ids"].shape[1]
        for row in out[:, width:].tolist():
            ends = [i for i, t in enumerate(row) if t in (eos, pad)]
            counter["tokens"] += ends[0] + 1 if ends else len(row)
        return out

    model.generate = counted
    return model


def classify_pass(pipeline, model) -> dict:
    import torch

    t0 = time.perf_counter()
    with torch.no_grad():
        pipeline.evaluate(model)
    seconds = time.perf_counter() - t0
    items = sum(pipeline.evaluated["items"].values())
    return {"seconds": seconds, "items": items, "items_per_second": items / seconds}


def generate_pass(pipeline, checked, model) -> dict:
    from harness.models.causal_lm import special_ids
    from harness.tasks import decoding
    from harness.tasks.generation import load_data

    prompts = load_data(checked.task, checked.trainer)[1].prompts
    eos, pad = special_ids(pipeline.tokenizer)
    counter = {"tokens": 0}
    counting(model, eos, pad, counter)
    t0 = time.perf_counter()
    decoding.generate(model, pipeline.tokenizer, prompts, checked.task.generation, progress=False)
    seconds = time.perf_counter() - t0
    del model.generate   # the instance's wrapper: the class's method again
    return {"seconds": seconds, "items": len(prompts), "items_per_second": len(prompts) / seconds,
            "tokens": counter["tokens"], "tokens_per_second": counter["tokens"] / seconds}


def measure(overrides: list[str], warmup: int, repeats: int, work: Path) -> dict:
    """One part: the task's kind, what ran, and each timed pass."""
    config = composed(overrides)
    pipeline, checked = run_parts(config, work)
    model, method_cfg = run_model(pipeline, checked, config)
    kind = checked.task.kind
    passes = []
    with checked.method.evaluating(model.eval(), method_cfg):
        for i in range(warmup + repeats):
            found = (classify_pass(pipeline, model) if kind == "classification"
                     else generate_pass(pipeline, checked, model))
            if i >= warmup:
                passes.append(found)
    key = "items_per_second" if kind == "classification" else "tokens_per_second"
    out = {"kind": kind, "overrides": overrides, "model": config["model"]["name"], "task": checked.task.name,
           "method": checked.method.name, "evaluated": pipeline.evaluated, "passes": passes,
           "items_per_second": summary([p["items_per_second"] for p in passes]),
           "batch_size": checked.trainer.eval_batch_size}
    if kind != "classification":
        out.update(tokens_per_second=summary([p[key] for p in passes]), decoding=vars(checked.task.generation),
                   tokens=statistics.median(p["tokens"] for p in passes))
    return out


def markdown(parts: dict, meta: dict) -> str:
    rows = []
    for name, p in parts.items():
        what = f"{p['model']} / {p['task']} / {p['method']}"
        items = f"{p['items_per_second']['median']:.1f}"
        tokens = (f"{p['tokens_per_second']['median']:.1f} ({p['tokens']:.0f} tokens a pass)"
                  if "tokens_per_second" in p else "–")
        count = sum(p["evaluated"]["items"].values())
        rows.append([name, what, count, items, tokens])
    lines = [f"# Evaluation throughput, {meta['repeats']} timed passes after {meta['warmup']} warm-up", "",
             f"Command: `{meta['command']}`", "",
             *markdown_table(["part", "model / task / method", "items", "items/s (median)", "decoded tokens/s (median)"],
                             rows), ""]
    for name, p in parts.items():
        lines.append(f"- {name}: `{' '.join(p['overrides'])}`" + (
            f"; decoding {', '.join(f'{k}={v}' for k, v in p['decoding'].items())}" if p.get("decoding") else
            f"; eval batch size {p['batch_size']}"))
    lines += ["", f"No target is set for these figures (issue 18 asks for them to be measured). Machine: {meta['machine']}."]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--classify", default="model=minilm task=glue/sst2",
                   help="harness-run overrides of a classification run ('' skips it; default: 'model=minilm task=glue/sst2')")
    p.add_argument("--generate", default="model=smollm2 task=e2e trainer.max_eval_samples=48",
                   help="harness-run overrides of a generation run ('' skips it; default: "
                        "'model=smollm2 task=e2e trainer.max_eval_samples=48')")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default: 1)")
    p.add_argument("--out", default=str(BENCH_DIR), help="output folder (default: reports/bench)")
    p.add_argument("--name", default="eval", help="file stem (default: eval)")
    return p


def main_eval(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        raise BenchError(f"--repeats must be ≥ 1 and --warmup ≥ 0, got {args.repeats} and {args.warmup}")
    parts = {}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as work:
        for name, text in (("classification", args.classify), ("generation", args.generate)):
            if text.strip():
                parts[name] = measure(shlex.split(text), args.warmup, args.repeats, Path(work) / name)
    if not parts:
        raise BenchError("--classify and --generate are both empty: nothing to measure")
    return finish("eval", argv, args.out, args.name, {"repeats": args.repeats, "warmup": args.warmup},
                  {"results": parts}, lambda meta: markdown(parts, meta))


if __name__ == "__main__":
    sys.exit(main_eval())
