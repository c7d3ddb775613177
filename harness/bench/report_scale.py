"""`harness-bench report-scale`: harness-report over a sweep campaign's worth of run records (default 10,000).

    harness-bench report-scale --records 10000 --profile 25

The records are synthetic but of real shape: each is a copy of a committed run.json (`--template`, default the
records of reports/glue_power_cpu: their tasks, configs, costs and provenance), with its method (every method yaml
but combo, at up to four sizes), training-set size, learning rate and seed varied, its metrics moved by a seeded
random amount, and, where the template kept per-example predictions, a predictions.jsonl.gz with a seeded tenth of
them changed. Then `python -m harness.report RECORDS --out …` runs in a fresh process, `--rounds` times: its wall
seconds (the target: ≤ 5 s, issue 18) and its CPU seconds (steadier on a shared machine), then where the time goes
(one more report in this process, part by part) and the floor: what any report of these records pays before it
computes anything (the interpreter and imports, reading and parsing every record and predictions file). `--profile N`
runs the report once more in this process under cProfile and lists the N functions with the most cumulative time.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import itertools
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 5.0
SIZES = {"r": (2, 4, 8, 16), "l_p": (8, 16, 32, 64), "top": (1, 2)}
SAMPLES, LR_SCALES = (500, 1000, 2000, 4000), (0.5, 1.0, 2.0)


def templates(folder: Path) -> list[tuple[dict, list[tuple[str, str]] | None]]:
    """(completed record, its predictions or None) for the first completed run.json of each task under `folder`;
    each prediction as two JSON lines: as it was, and with the label moved (0 ↔ 1; others kept)."""
    found, tasks = [], set()
    for path in sorted(folder.rglob("run.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("status") != "completed" or record["task"] in tasks:
            continue
        tasks.add(record["task"])
        preds = path.parent / "predictions.jsonl.gz"
        rows = [json.loads(line) for line in gzip.decompress(preds.read_bytes()).decode().splitlines()
                if line.strip()] if preds.is_file() else None
        found.append((record, None if rows is None else [(json.dumps(r), json.dumps({**r, "prediction": _moved(r)}))
                                                         for r in rows]))
    return found


def _moved(row: dict):
    return 1 - row["prediction"] if row["prediction"] in (0, 1) else row["prediction"]


def variants() -> list[tuple[str, dict]]:
    """(method, its config) for every method yaml but combo, at each of its sizes."""
    import methods
    from harness import catalog

    out = []
    for name in catalog.choices("method"):
        if name == "combo":
            continue
        key = methods.size_param(name)
        for size in SIZES.get(key, (None,)) if key else (None,):
            meta = dict(catalog.method_meta(name))
            out.append((name, meta if size is None else {**meta, key: size}))
    return out


def synthetic_record(template: dict, method: str, method_cfg: dict, samples: int, lr_scale: float, seed: int,
                     index: int, rng: random.Random) -> dict:
    record = copy.deepcopy(template)
    record["run_id"] = hashlib.sha256(f"synthetic-{index}".encode()).hexdigest()[:16]
    record["method"], record["seed"] = method, seed
    config = record["config"]
    config["method"], config["seed"] = method_cfg, seed
    config["trainer"].update(lr=method_cfg.get("lr", 1e-3) * lr_scale, max_train_samples=samples)
    record["output_dir"] = f"multirun/synthetic/{record['task']}-{method}-{record['run_id']}"
    shift = rng.gauss(0, 0.02)
    metrics = record["metrics"]
    for row in [metrics["best"], metrics.get("final") or {}, *metrics.get("per_epoch", [])]:
        for key, value in row.items():
            if key not in ("epoch", "step", "train_loss") and isinstance(value, float):
                row[key] = min(1.0, max(0.0, value + shift))
    return record


def changed(lines: list[tuple[str, str]], rng: random.Random) -> bytes:
    """The template's predictions with a seeded tenth of them moved to another label."""
    text = "".join((moved if rng.random() < 0.1 else kept) + "\n" for kept, moved in lines)
    return gzip.compress(text.encode(), compresslevel=1)


def write_records(n: int, template_dir: Path, out: Path, seed: int = 0, predictions: bool = True) -> dict:
    """`n` synthetic run records under `out` (one folder each), with per-example predictions where the templates kept
    them (and `predictions`); returns what they vary over."""
    found, configs = templates(template_dir), variants()
    if not found:
        from harness.bench.common import BenchError

        raise BenchError(f"--template {template_dir}: no completed run.json there")
    grid = list(itertools.product(range(len(found)), range(len(configs)), SAMPLES, LR_SCALES))
    rng = random.Random(seed)
    for i in range(n):
        t, c, samples, lr_scale = grid[i % len(grid)]
        template, preds = found[t]
        record = synthetic_record(template, *configs[c], samples, lr_scale, i // len(grid), i, rng)
        folder = out / f"{record['task']}-{record['method']}-{record['run_id']}"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        if preds is not None and predictions:
            (folder / "predictions.jsonl.gz").write_bytes(changed(preds, rng))
    return {"records": n, "templates": len(found), "configurations": len(grid), "seeds": -(-n // len(grid)),
            "tasks": sorted({r["task"] for r, _ in found}), "methods": sorted({m for m, _ in configs}),
            "with_predictions": predictions * sum(p is not None for _, p in found) / len(found)}


def time_report(records: Path, out: Path) -> dict:
    """Wall and CPU seconds of `python -m harness.report RECORDS --out OUT` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.report", str(records), "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"harness-report failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "stdout": proc.stdout.strip()[-300:]}


PHASES = (("read the records", "harness.report", "load_runs"), ("aggregate over seeds", "harness.report.tables", "aggregate"),
          ("claim scorecard", "harness.report", "_claims_table"),
          ("paper tables, bold by paired evidence", "harness.report", "_paper_tables"),
          ("scorecard against the paper", "harness.report", "_scorecard_table"),
          ("ablation and latency layouts", "harness.report.layouts", "layout_tables"),
          ("plots (PNG + PDF)", "harness.report.plots", "make_plots"), ("write the tables", "harness.report", "write_tables"),
          ("runs.csv", "harness.report", "runs_csv"), ("side sections", "harness.report.sections", "side_sections"))


def _timed(label: str, work) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return {"part": label, "wall_seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3)}


def floor_seconds(records: Path) -> list[dict]:
    """What any report of these records pays before it computes anything: the interpreter and the report's imports
    (a fresh process), every run.json read and parsed (runs.csv holds every field), and every predictions file read
    and parsed (bold compares each cell with its column's best, so a table reads all of them)."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-c", "import harness.report, methods"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = [{"part": "interpreter and imports (a fresh process)", "wall_seconds": round(time.perf_counter() - t0, 3),
              "cpu_seconds": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3)}]
    from harness.report.evidence import PREDICTIONS, read_predictions

    files = sorted(records.rglob("run.json"))
    predictions = [f.with_name(PREDICTIONS) for f in files if f.with_name(PREDICTIONS).is_file()]
    found.append(_timed(f"read and parse {len(files):,} run.json", lambda: [json.loads(f.read_bytes()) for f in files]))
    found.append(_timed(f"read and parse {len(predictions):,} {PREDICTIONS}",
                        lambda: [read_predictions(p) for p in predictions]))
    return found


def phase_seconds(records: Path, out: Path) -> list[dict]:
    """The report once more in this process (its imports already done), each part timed: wall and CPU seconds."""
    import importlib

    from harness.report import main as report_main

    found, saved = [], []
    for label, module, name in PHASES:
        owner = importlib.import_module(module)
        original, row = getattr(owner, name), {"phase": label, "wall_seconds": 0.0, "cpu_seconds": 0.0}

        def timed(*args, _fn=original, _row=row, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return _fn(*args, **kwargs)
            finally:
                _row["wall_seconds"] += time.perf_counter() - wall
                _row["cpu_seconds"] += time.process_time() - cpu

        setattr(owner, name, timed)
        saved.append((owner, name, original))
        found.append(row)
    try:
        report_main([str(records), "--out", str(out)])
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    return [{**r, "wall_seconds": round(r["wall_seconds"], 3), "cpu_seconds": round(r["cpu_seconds"], 3)} for r in found]


def profile_report(records: Path, out: Path, top: int) -> list[dict]:
    """The report in this process under cProfile: the `top` functions by cumulative seconds."""
    import cProfile
    import pstats

    from harness.report import main as report_main

    profiler = cProfile.Profile()
    profiler.runcall(report_main, [str(records), "--out", str(out)])
    stats = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda kv: -kv[1][3])[:top]
    return [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "tottime": round(tot, 3),
             "cumtime": round(cum, 3)} for (file, line, name), (_, calls, tot, cum, _) in rows]


def markdown(found: dict, meta: dict) -> str:
    from harness.bench.common import markdown_table

    wall, cpu, made = found["wall_seconds"], found["cpu_seconds"], found["records"]
    lines = [f"# harness-report over {made['records']:,} run records, {meta['rounds']} round(s)", "",
             f"Command: `{meta['command']}`", "",
             f"Report written in **{wall['median']:.2f} s** wall (median; min {wall['min']:.2f}, max {wall['max']:.2f}; "
             f"target ≤ {TARGET_SECONDS:g} s): **{found['verdict']}**; {cpu['median']:.2f} CPU seconds.", "",
             f"Records: {made['records']:,} synthetic copies of {made['templates']} committed run.json "
             f"(`{meta['template']}`; tasks {', '.join(made['tasks'])}), over {made['configurations']:,} configurations "
             f"(method × size × training-set size × learning rate) and up to {made['seeds']} seeds each; "
             f"{100 * made['with_predictions']:.0f} % with per-example predictions. Writing them took "
             f"{found['write_seconds']:.1f} s. Machine: {meta['machine']}."]
    lines += ["", "Where the time goes (one more report in the bench's own process, its imports done; the parts do "
              "not overlap; the rest of the wall time above is the interpreter, imports and the index pages):", "",
              *markdown_table(["part", "wall (s)", "CPU (s)"], [[p["phase"], f"{p['wall_seconds']:.2f}",
                                                                f"{p['cpu_seconds']:.2f}"] for p in found["phases"]])]
    floor = sum(p["cpu_seconds"] for p in found.get("floor", []))
    lines += ["", f"The floor: what any report of these records pays before a table, a comparison or a plot, "
              f"{floor:.2f} CPU seconds together ({'above' if floor > TARGET_SECONDS else 'within'} the target's "
              f"{TARGET_SECONDS:g} s on this machine):", "",
              *markdown_table(["part", "wall (s)", "CPU (s)"], [[p["part"], f"{p['wall_seconds']:.2f}",
                                                                f"{p['cpu_seconds']:.2f}"] for p in found.get("floor", [])])]
    if found.get("profile"):
        lines += ["", f"Profile (cProfile, in-process, top {len(found['profile'])} by cumulative time):", "",
                  *markdown_table(["function", "calls", "own (s)", "cumulative (s)"],
                                  [[p["function"], p["calls"], f"{p['tottime']:.2f}", f"{p['cumtime']:.2f}"]
                                   for p in found["profile"]])]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-bench report-scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=10000, help="synthetic run records (default: 10000)")
    p.add_argument("--template", default="reports/glue_power_cpu/records",
                   help="folder of committed run.json to copy (default: reports/glue_power_cpu/records)")
    p.add_argument("--rounds", type=int, default=1, help="timed report processes (default: 1)")
    p.add_argument("--predictions", action=argparse.BooleanOptionalAction, default=True,
                   help="write per-example predictions where the template has them (default: yes)")
    p.add_argument("--seed", type=int, default=0, help="seed of the metric shifts and changed predictions (default: 0)")
    p.add_argument("--profile", type=int, default=0, help="list the N most expensive functions (default: 0, none)")
    p.add_argument("--out", default="reports/bench", help="output folder (default: reports/bench)")
    p.add_argument("--name", default="report_scale", help="file stem (default: report_scale)")
    return p


def main_report_scale(argv=None) -> int:
    from harness.bench.common import BenchError, finish, summary, verdict

    args = parser().parse_args(argv)
    if args.records < 1 or args.rounds < 1 or not Path(args.template).is_dir():
        raise BenchError(f"--records and --rounds must be ≥ 1 and --template a folder, got {args.records}, "
                         f"{args.rounds}, {args.template!r}")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as work:
        records, t0 = Path(work) / "records", time.perf_counter()
        made = write_records(args.records, Path(args.template), records, args.seed, args.predictions)
        write_seconds = time.perf_counter() - t0
        rounds = [time_report(records, Path(work) / f"report{i}") for i in range(args.rounds)]
        phases, floor = phase_seconds(records, Path(work) / "phases"), floor_seconds(records)
        profile = profile_report(records, Path(work) / "profiled", args.profile) if args.profile else []
    wall = summary([r["wall_seconds"] for r in rounds])
    found = {"wall_seconds": wall, "cpu_seconds": summary([r["cpu_seconds"] for r in rounds]),
             "target": f"≤ {TARGET_SECONDS:g} s", "verdict": verdict(wall["median"], TARGET_SECONDS),
             "records": made, "write_seconds": round(write_seconds, 2), "rounds": rounds, "phases": phases,
             "floor": floor, "profile": profile}
    return finish("report-scale", argv, args.out, args.name, {"rounds": args.rounds, "template": args.template},
                  {"result": found}, lambda meta: markdown(found, meta))


if __name__ == "__main__":
    sys.exit(main_report_scale())
