"""`harness-bench startup`: seconds from process start to the end of the first training step of a real harness-run.

    harness-bench startup model=minilm task=glue/sst2 method=lora --rounds 3

Each round starts a fresh `python -m harness.bench.startup --child …` process that is harness-run itself (it imports
harness.run and calls its `main` with the overrides), with hooks that note the wall-clock time of each stage of the
run: harness imported, the config composed (Hydra), W&B's modules imported (harness/tracking.py `preload`, when the run
tracks), the runner imported (torch), the config validated (harness/validate.py), the task's data ready (tasks.build),
the model loaded with the method applied (runner.adapt), the tracker started, training entered (fit), and the first
training step done, where the child stops the run as Ctrl-C would (its record, in a throw-away folder, says
interrupted). A hook is put in when harness-run itself imports its module, so the child imports what harness-run
imports, in the same order. Time 0 is the parent's clock just before it starts the process, so the total includes
the interpreter's start. `--warmup` untimed rounds first fill the caches a second run finds (tokenised data, the GGUF
conversion, the file cache). Target for MiniLM: ≤ 8 s (issue 18).
"""
from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 8.0
# (stage, module, function, noted at its entry or its return): the hooks, in the order a run reaches them
STAGES = (("config composed", "harness.tracking", "preload", "entry"),
          ("W&B imported", "harness.tracking", "preload", "return"),
          ("validated", "harness.validate", "check", "return"), ("data ready", "harness.tasks", "build", "return"),
          ("model ready", "harness.runner", "adapt", "return"),
          ("tracker started", "harness.runner", "start_tracking", "return"),
          ("training entered", "harness.runner", "fit", "entry"))


class FirstStep(KeyboardInterrupt):
    """Raised after the first training step: the run ends as after Ctrl-C, cleanly (tracker closed, lock freed)."""


def _mark(marks: dict, name: str, fn, at: str):
    def hooked(*args, **kwargs):
        if at == "entry":
            marks.setdefault(name, time.time())
        out = fn(*args, **kwargs)
        marks.setdefault(name, time.time())
        return out

    return hooked


class OnImport(importlib.abc.MetaPathFinder):
    """`patches[name](module)` right after the module `name` is first imported (at once for one already imported),
    so that hooks leave harness-run's own import order as it is (harness/run.py imports the runner, and torch, only
    once the config is composed)."""

    def __init__(self, patches: dict):
        self.patches = patches
        for name in [n for n in patches if n in sys.modules]:
            patches.pop(name)(sys.modules[name])

    def find_spec(self, name, path=None, target=None):
        if name not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run_module, patch = spec.loader.exec_module, self.patches.pop(name)

        def exec_module(module):
            run_module(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


def hooks(marks: dict, stamp: str) -> dict:
    """{module: patch}: each stage's hook, the runner's import noted, and the first training step's end (which writes
    the marks to `stamp` and stops the run)."""
    patches = {"harness.runner": [lambda module: marks.setdefault("runner imported", time.time())]}
    for name, module, function, at in STAGES:
        patches.setdefault(module, []).append(
            lambda owner, name=name, function=function, at=at: setattr(owner, function,
                                                                      _mark(marks, name, getattr(owner, function), at)))

    def stop_after_first(loop):
        original = loop.train_step

        def first_step(*args, **kwargs):
            out = original(*args, **kwargs)
            marks["first step done"] = time.time()
            Path(stamp).write_text(json.dumps(marks))
            raise FirstStep("first training step measured")

        loop.train_step = first_step

    patches["harness.train.loop"] = [stop_after_first]
    return {module: (lambda owner, todo=todo: [patch(owner) for patch in todo]) for module, todo in patches.items()}


def child(stamp: str, overrides: list[str]) -> None:
    """harness-run with the stage hooks; writes the marks (epoch seconds) to `stamp` at the first step."""
    marks: dict[str, float] = {"interpreter ready": time.time()}
    import harness.run

    marks["harness imported"] = time.time()
    sys.meta_path.insert(0, OnImport(hooks(marks, stamp)))
    sys.argv = ["harness-run", *overrides]
    harness.run.main()


def one_round(overrides: list[str], work: Path, index: int) -> dict:
    """{stage: seconds since the process was started} of one fresh harness-run process."""
    stamp = work / f"stamp{index}.json"
    cmd = [sys.executable, "-m", "harness.bench.startup", "--child", str(stamp), *overrides,
           f"hydra.run.dir={work / f'run{index}'}"]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if not stamp.is_file():
        raise RuntimeError(f"the run stopped before its first training step (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    marks = json.loads(stamp.read_text())
    return {name: round(t - start, 3) for name, t in sorted(marks.items(), key=lambda kv: kv[1])}


def stages(rounds: list[dict]) -> list[dict]:
    """Per stage, in order: its median time since process start, and the median time it took after the stage before."""
    names = list(rounds[0])
    out, previous = [], None
    for name in names:
        at = [r[name] for r in rounds]
        took = [r[name] - (r[previous] if previous else 0.0) for r in rounds]
        out.append({"stage": name, "at_seconds": round(statistics.median(at), 3),
                    "took_seconds": round(statistics.median(took), 3)})
        previous = name
    return out


def markdown(found: dict, meta: dict) -> str:
    from harness.bench.common import markdown_table

    rows = [[s["stage"], f"{s['at_seconds']:.2f}", f"{s['took_seconds']:.2f}"] for s in found["stages"]]
    total = found["first_step_seconds"]
    return "\n".join([
        f"# Start-up: process start to the first training step, {meta['rounds']} rounds", "", f"Command: `{meta['command']}`",
        "", f"First training step done after **{total['median']:.2f} s** (median; min {total['min']:.2f}, max "
        f"{total['max']:.2f}; target ≤ {TARGET_SECONDS:g} s): **{found['verdict']}**", "",
        *markdown_table(["stage (when it returned)", "since start (s, median)", "took (s, median)"], rows), "",
        f"Each round is a fresh process running harness-run `{' '.join(meta['overrides'])}` until its first step, after "
        f"{meta['warmup']} untimed warm-up round(s) (caches filled). Machine: {meta['machine']}."]) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench startup", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", default=[], help="harness-run overrides (default: the harness's defaults)")
    p.add_argument("--rounds", type=int, default=3, help="timed fresh processes (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first, to fill caches (default: 1)")
    p.add_argument("--out", default="reports/bench", help="output folder (default: reports/bench)")
    p.add_argument("--name", default="startup", help="file stem (default: startup)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def main_startup(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        child(args.child, args.overrides)
        return 0
    from harness.bench.common import BenchError, finish, summary, verdict

    if args.rounds < 1 or args.warmup < 0:
        raise BenchError(f"--rounds must be ≥ 1 and --warmup ≥ 0, got {args.rounds} and {args.warmup}")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as work:
        for i in range(args.warmup):
            one_round(args.overrides, Path(work), -1 - i)
        rounds = [one_round(args.overrides, Path(work), i) for i in range(args.rounds)]
    total = summary([r["first step done"] for r in rounds])
    found = {"first_step_seconds": total, "target": f"≤ {TARGET_SECONDS:g} s",
             "verdict": verdict(total["median"], TARGET_SECONDS), "stages": stages(rounds), "rounds": rounds}
    return finish("startup", argv, args.out, args.name,
                  {"rounds": args.rounds, "warmup": args.warmup, "overrides": args.overrides}, {"result": found},
                  lambda meta: markdown(found, meta))


if __name__ == "__main__":
    sys.exit(main_startup())
