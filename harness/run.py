"""`harness-run`: compose model × task × method (+ trainer, tracker) with Hydra, run it, print what it gave.

    harness-run model=minilm task=glue/sst2 method=lora trainer.max_train_samples=2000 seed=3

`main()` composes (config in harness/conf/, shipped with the package) and calls `run(cfg, output_dir)`
(harness/runner.py, which tests call directly), imported only then: `--help`, `--cfg job` and a bad command line answer
without loading torch, and W&B's modules load before it (harness/tracking.py `preload`). Long sweeps: the config is
validated before anything loads (exit code 2, one line per problem); the output folder derives from the run's identity
and is locked while in use (harness/outputs.py); a rerun of the same command resumes, or skips a completed run
(`skip_completed: true`, as sweeps set it). A run's exception is written to its run.json and the next run of a
multirun starts; the exit code says whether any run did not complete (1; 2 when one had bad input).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from harness import catalog, gcpause, outputs, tracking
from harness.cli_checks import command_line_problem
from harness.errors import HarnessError

log = logging.getLogger("harness")
FAILURES: list[tuple[str, int]] = []   # (output dir, exit code) of runs in this process that did not complete
outputs.register_resolvers()           # ${run_id:} and ${coalesce:...} in conf/config.yaml's output folders


def print_summary(record: dict) -> None:
    out = Path(record["output_dir"])
    if record.get("skipped"):
        print(f"\nskipped: run {record['run_id']} already completed (skip_completed=true)")
    if record["status"] == "completed":
        m = record["metrics"]
        print(f"\n{record['task']} / {record['method']} / {record['model']} (seed {record['seed']}): best epoch {m['best_epoch']}")
        for key, value in m["best"].items():
            print(f"  dev {key:<24} {value:.4f}")
        p = record["params"]
        print(f"  trainable params: {p['trainable']:,} ({p['trainable_no_head']:,} without the head) of {p['total']:,}")
        if record.get("flags"):
            print(f"  flags: {', '.join(record['flags'])}")
        for r in record.get("resumes") or []:
            print(f"  resumed at step {r['step']} (epoch {r['epoch']}, {r['batch']} batch(es) in)")
    else:
        print(f"\nrun {record['status']}: {(record['error'] or {}).get('message')}")
    print(f"  run record: {out / 'run.json'}")
    if (record.get("tracking") or {}).get("wandb_dir"):
        print(f"  W&B run:    {record['tracking']['wandb_dir']}  (upload later with `wandb sync`)")


CONF_DIR = str(catalog.CONF_DIR)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    tracking.preload(cfg.get("tracker") or {})   # before torch: W&B's imports cost less with fewer modules loaded
    from harness.runner import run   # torch, transformers, datasets: not for --help, --cfg or a bad command line

    try:
        record = run(cfg, output_dir)
    except outputs.RunLocked as exc:  # in a sweep shared by two shells, the other one has this run
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            print(f"skipped: {exc}", file=sys.stderr)
        else:
            _failed(output_dir, 2, f"error: {exc}")
        return
    except HarnessError as exc:
        _failed(output_dir, 2, *(f"error: {line}" for line in str(exc).splitlines()))
        return
    except Exception as exc:  # recorded in run.json; a multirun goes on with the next config
        log.exception("run failed: %s", exc)
        _failed(output_dir, 1)
        return
    print_summary(record)
    if record["status"] != "completed":
        _failed(output_dir, 1)


def _failed(output_dir: Path, code: int, *lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    FAILURES.append((str(output_dir), code))
    outputs.note_failure(str(output_dir), code)


def main() -> None:
    """Logging is Hydra's alone (console, and `run.log` in the run's folder): configured once."""
    problem = command_line_problem(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="harness-run-") as tmp:
        # Launcher workers (joblib, submitit_local) are other processes: they report failures through this file.
        os.environ[outputs.FAILURES_ENV] = str(Path(tmp) / "failures")
        gcpause.hold()   # until the first run's config is validated: composing, W&B and torch (harness/gcpause.py)
        try:
            _hydra_main()
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (harness/faults.py): the record says interrupted
            name = str(exc) or "SIGINT"
            print(f"interrupted by {name}: run.json says interrupted; rerun the same command to resume from the last "
                  "checkpoint", file=sys.stderr)
            sys.exit(143 if name == "SIGTERM" else 130)
        finally:
            gcpause.release()   # when no run got as far (--help, a skipped run, a failed import)
        FAILURES.extend(f for f in outputs.read_failures(os.environ.pop(outputs.FAILURES_ENV)) if f not in FAILURES)
    if FAILURES:
        if len(FAILURES) > 1 or "-m" in sys.argv or "--multirun" in sys.argv:
            print(f"{len(FAILURES)} run(s) did not complete:", *(f"  {d}" for d, _ in FAILURES), sep="\n", file=sys.stderr)
        sys.exit(max(code for _, code in FAILURES))


if __name__ == "__main__":
    main()
