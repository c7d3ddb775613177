"""`harness-run`: compose model × task × method (+ trainer, tracker) with Hydra, train, evaluate, write run.json.

    harness-run model=minilm task=glue/sst2 method=lora trainer.max_train_samples=2000 seed=3

`main()` only composes and calls `run(cfg, output_dir)`, which tests call directly. Every run leaves a `run.json` in its
output folder; a run that did not finish says `failed` or `diverged` there, never `completed`.

Long sweeps: the config is validated before anything loads (harness/validate.py: every problem, one line each, exit
code 2); the output folder derives from the run's identity and is locked while in use (harness/outputs.py); training
checkpoints there and a rerun of the same command resumes (`resume: true`), or skips a completed run
(`skip_completed: true`, as sweeps set it). A run's exception is written to its run.json and the next run of a multirun
starts; the exit code says whether any run did not complete (1; 2 when one had bad input).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from harness import catalog, flags, outputs, results, tasks, validate
from harness.train.checkpoint import Checkpoints
from harness.errors import HarnessError
from harness.models import ModelInfo
from harness.tracking import NullTracker, make_tracker, run_tags
from harness.train.loop import Diverged, TrainResult, fit

log = logging.getLogger("harness")
FAILURES: list[tuple[str, int]] = []   # (output dir, exit code) of runs in this process that did not complete
outputs.register_resolvers()           # ${run_id:} and ${coalesce:...} in conf/config.yaml's output folders


def count_params(model, info: ModelInfo) -> dict:
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    return {
        "trainable": sum(trainable.values()),
        "trainable_no_head": sum(v for n, v in trainable.items() if not info.is_head(n)),
        "total": sum(p.numel() for p in model.parameters()),
    }


def metrics_of(result: TrainResult, headline: str) -> dict:
    ends = flags.loss_ends(result.losses)
    return {"headline": headline, "best": result.best, "best_epoch": result.best_epoch, "per_epoch": result.per_epoch,
            "final": {k: v for k, v in result.per_epoch[-1].items() if k not in ("epoch", "step")}
            if result.per_epoch else None,
            "train_loss_start": ends and ends[0], "train_loss_end": ends and ends[1],
            "nonfinite_skipped": result.nonfinite_skipped}


def same_run(previous: dict | None, record: dict) -> bool:
    """The folder's run.json (`previous`) is this configuration's: the same run_id."""
    return bool(previous) and previous.get("run_id") == record["run_id"]


def skip(previous: dict | None, record: dict, config: dict) -> bool:
    """`skip_completed` and the folder's run.json is this run's (same run_id), completed."""
    done = same_run(previous, record) and previous.get("status") == "completed"
    if done and config.get("skip_completed"):
        log.info("skipping run %s: already completed (%s)", record["run_id"], Path(record["output_dir"]) / "run.json")
        return True
    return False


def run(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train and evaluate one configuration; returns the run record (also written to `output_dir/run.json`).
    Resumes from the folder's checkpoints when its run.json is this run's (same run_id) and did not complete."""
    output_dir = Path(output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    record = results.new_record(config, output_dir)
    record["resumes"] = []  # {step, epoch, batch, at}: each checkpoint this run went on from, and when
    record_path = output_dir / "run.json"
    previous = results.read_record(record_path)
    if skip(previous, record, config):  # before any work
        return {**previous, "skipped": True}
    tracker, folder, holding = NullTracker(), contextlib.ExitStack(), False
    try:
        try:  # everything cheap, before any data or model loads: fail at start-up, not after an hour of training
            checked = validate.check(config, output_dir)
        finally:  # a record, even a failed one, is written only by the process that holds the folder
            holding = output_dir.is_dir() and folder.enter_context(outputs.hold(output_dir))
        if not holding:
            raise outputs.RunLocked(f"{output_dir} is in use by another process ({outputs.holder(output_dir)}); "
                                    "it is running this configuration now")
        previous = results.read_record(record_path)  # again, under the lock: it may have completed meanwhile
        if skip(previous, record, config):
            holding = False  # its record stays as it is
            return {**previous, "skipped": True}
        tcfg, method, mcfg, info = checked.tcfg, checked.method, checked.mcfg, checked.info
        task = config["task"]
        checkpoints = Checkpoints(output_dir / "checkpoints", record["run_id"], tcfg.checkpoint_every,
                                  tcfg.keep_checkpoints)
        if same_run(previous, record) and config.get("resume", True) and previous.get("status") != "completed":
            record["started_at"], record["resumes"] = previous["started_at"], previous.get("resumes", [])
        else:
            checkpoints.clear()  # another configuration's, a completed run's, or a fresh start was asked for
        results.write_json_atomic(record_path, record)

        pipeline = tasks.build(task, config["model"], tcfg)
        record["provenance"] = results.provenance(pipeline.provenance, None)  # versions, for failed runs too
        torch.manual_seed(config["seed"])  # the task head's initialisation draws from torch's RNG
        model = method.apply(pipeline.build_model(), mcfg, info)
        for name, p in model.named_parameters():  # every method trains the task head
            if info.is_head(name):
                p.requires_grad_(True)
        record["params"] = count_params(model, info)
        # The method's settings as applied: with method.budget, the size value the budget picked (r, l_p, …).
        record["method_config"] = dataclasses.asdict(mcfg) if dataclasses.is_dataclass(mcfg) else dict(mcfg)
        log.info("params: %s", record["params"])

        tracker = make_tracker(config["tracker"], config=config, output_dir=output_dir,
                               name=f"{task['name']}-{method.name}-s{config['seed']}", job_type=method.name,
                               tags=run_tags(config))
        record["tracking"] = {"wandb_dir": tracker.run_dir}

        def evaluate(m):
            with method.evaluating(m, mcfg):
                return pipeline.evaluate(m)

        resumed_at = results.now()

        def on_progress(result: TrainResult):  # the history so far survives a crash or a kill in run.json
            if result.resumed_from and record["resumes"][-1:] != [{**result.resumed_from, "at": resumed_at}]:
                record["resumes"].append({**result.resumed_from, "at": resumed_at})
            record["metrics"] = metrics_of(result, task["headline"])
            results.write_json_atomic(record_path, record)

        result = fit(model, pipeline.train, tcfg, collate=pipeline.collate, evaluate=evaluate,
                     headline=pipeline.select_on or task["headline"], tracker=tracker, seed=config["seed"],
                     loss_fn=pipeline.loss_fn, checkpoints=checkpoints, on_progress=on_progress)
        record["metrics"] = metrics_of(result, task["headline"])
        record["cost"] = result.cost
        record["provenance"]["device"] = result.cost["device"]
        if pipeline.after_run:  # e.g. decode once with the final model and save the generations
            with method.evaluating(model, mcfg):
                pipeline.after_run(model, output_dir, record, tracker)
        if method.save:
            method.save(model, mcfg, info, output_dir / "adapter")
        record["flags"] = flags.flags(task["headline"], record["metrics"]["best"], result.best_stats, result.losses,
                                      result.nonfinite_skipped)
        if record["flags"]:
            log.warning("run flagged: %s", ", ".join(record["flags"]))
        record["status"] = "completed"
        results.write_json_atomic(record_path, record)  # completed before the checkpoints go
        try:
            checkpoints.finish(result.best_state, output_dir / "best.safetensors")
        except OSError as exc:
            log.warning("could not prune checkpoints in %s: %s", checkpoints.folder, exc)
        tracker.summary({"status": "completed", "headline": task["headline"], "flags": record["flags"],
                         "best_epoch": record["metrics"]["best_epoch"],
                         **{f"best/{k}": v for k, v in record["metrics"]["best"].items()},
                         **{f"params/{k}": v for k, v in record["params"].items()},
                         **{f"cost/{k}": v for k, v in result.cost.items() if isinstance(v, (int, float))}})
    except Diverged as exc:
        record["status"], record["error"] = "diverged", results.error_info(exc)
    except BaseException as exc:
        record["status"], record["error"] = "failed", results.error_info(exc)
        raise
    finally:
        record["finished_at"] = results.now()
        if record["status"] != "completed":
            tracker.summary({"status": record["status"], "error": (record["error"] or {}).get("message")})
        tracker.finish(ok=record["status"] == "completed")
        if holding:
            results.write_json_atomic(record_path, record)
        folder.close()
    return record


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
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    with tempfile.TemporaryDirectory(prefix="harness-run-") as tmp:
        # Launcher workers (joblib, submitit_local) are other processes: they report failures through this file.
        os.environ[outputs.FAILURES_ENV] = str(Path(tmp) / "failures")
        _hydra_main()
        FAILURES.extend(f for f in outputs.read_failures(os.environ.pop(outputs.FAILURES_ENV)) if f not in FAILURES)
    if FAILURES:
        if len(FAILURES) > 1 or "-m" in sys.argv or "--multirun" in sys.argv:
            print(f"{len(FAILURES)} run(s) did not complete:", *(f"  {d}" for d, _ in FAILURES), sep="\n", file=sys.stderr)
        sys.exit(max(code for _, code in FAILURES))


if __name__ == "__main__":
    main()
