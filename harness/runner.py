"""One run, start to end: `run(cfg, output_dir) -> record`, in three parts that read top to bottom.

    open     skip a completed run (skip_completed), validate everything before anything loads (harness/validate.py),
             take the folder's lock, decide between resuming the folder's run and starting afresh
    execute  build the task pipeline, apply the method (sized to its budget), train (harness/train/loop.py), decode and
             save what the task and the method keep, flag silent failures
    close    the record's final status and W&B's end, whatever happened

Every run leaves a `run.json` in its output folder (written atomically: at start, after each evaluation, at the end);
a run that did not finish says `failed` or `diverged` there, never `completed`. A record is written only by the
process that holds the folder's lock (harness/outputs.py).
"""
from __future__ import annotations

import contextlib
import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import methods
from harness import faults, flags, gcpause, init_from, outputs, protocols, results, tasks, validate
from harness.io import write_atomic, write_json_atomic
from harness.models.info import ModelInfo
from harness.protocols import effective
from harness.tracking import NullTracker, make_tracker, run_tags
from harness.train.checkpoint import BEST_FILE, Checkpoints
from harness.train.loop import Diverged, StepHooks, TrainResult, fit

log = logging.getLogger("harness")
PREDICTIONS = "predictions.jsonl.gz"   # the best evaluation's per-example rows, beside run.json


@dataclass
class Session:
    """A run in progress: its record and where it goes, the tracker, and the folder lock while it is held."""

    config: dict
    record: dict
    output_dir: Path
    tracker: object = field(default_factory=NullTracker)
    lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    holding: bool = False
    previous: dict | None = None      # the folder's record of this run from an earlier attempt (resuming), if any
    problems: list = field(default_factory=list)   # found before the session (the protocol's), reported at validation

    @property
    def record_path(self) -> Path:
        return self.output_dir / "run.json"

    def write(self) -> None:
        write_json_atomic(self.record_path, self.record)


def same_run(previous: dict | None, record: dict) -> bool:
    """The folder's run.json (`previous`) is this configuration's: the same run_id."""
    return bool(previous) and previous.get("run_id") == record["run_id"]


def skip(previous: dict | None, record: dict, config: dict) -> bool:
    """The folder's run.json is this run's (same run_id) and completed: a rerun is skipped, with a message, unless
    `rerun=true` (or `skip_completed=false`) asks for it to train again."""
    done = same_run(previous, record) and previous.get("status") == "completed"
    if done and config.get("skip_completed", True) and not config.get("rerun"):
        log.info("skipping run %s: already completed (%s); rerun=true trains it again", record["run_id"],
                 Path(record["output_dir"]) / "run.json")
        return True
    return False


def metrics_of(result: TrainResult, headline: str, tcfg) -> dict:
    ends = flags.loss_ends(result.losses)
    return {"headline": headline, "best": result.best, "best_epoch": result.best_epoch, "per_epoch": result.per_epoch,
            "final": {k: v for k, v in result.per_epoch[-1].items() if k not in ("epoch", "step")}
            if result.per_epoch else None,
            "train_loss_start": ends and ends[0], "train_loss_end": ends and ends[1],
            "loss_curve": result.loss_curve(tcfg.log_every, tcfg.grad_accum),
            "nonfinite_skipped": result.nonfinite_skipped}


def open_run(s: Session) -> tuple[validate.Checked, Checkpoints] | None:
    """Validate, lock, and decide resume vs fresh start; None when the run is to be skipped (completed meanwhile)."""
    gcpause.hold()   # validation imports transformers and datasets: no garbage to look for (harness/gcpause.py)
    try:  # everything cheap, before any data or model loads: fail at start-up, not after an hour of training
        checked = validate.check(s.config, s.output_dir, s.problems)
    finally:  # a record, even a failed one, is written only by the process that holds the folder
        gcpause.release()
        s.holding = s.output_dir.is_dir() and s.lock.enter_context(outputs.hold(s.output_dir))
    if not s.holding:
        raise outputs.RunLocked(f"{s.output_dir} is in use by another process ({outputs.holder(s.output_dir)}); "
                                "it is running this configuration now")
    previous = results.read_record(s.record_path)  # again, under the lock: it may have completed meanwhile
    if skip(previous, s.record, s.config):
        s.holding = False  # its record stays as it is
        return None
    if previous and not same_run(previous, s.record) and not s.config.get("overwrite"):
        s.holding = False  # another configuration's record: left as it is
        raise outputs.foreign_record(s.output_dir, previous, s.record)
    outputs.clean_stale(s.output_dir)
    tcfg = checked.trainer
    checkpoints = Checkpoints(s.output_dir / "checkpoints", s.record["run_id"], tcfg.checkpoint_every,
                              tcfg.keep_checkpoints)
    if _resumes(s, previous, checkpoints):
        s.previous = previous
        if previous:
            s.record["started_at"], s.record["resumes"] = previous["started_at"], previous.get("resumes", [])
    else:
        checkpoints.clear()  # a completed run asked to rerun, an overwritten folder, or a fresh start was asked for
    s.write()
    return checked, checkpoints


def _resumes(s: Session, previous: dict | None, checkpoints: Checkpoints) -> bool:
    """Whether this attempt goes on from the folder's checkpoints: the same run, not completed, resume=true; or a
    run.json that a kill or a full disk left unreadable beside this run's own checkpoints."""
    if not s.config.get("resume", True):
        return False
    if same_run(previous, s.record):
        return previous.get("status") != "completed"
    if previous is None and s.record_path.exists() and checkpoints.latest() is not None:
        log.warning("%s is unreadable; resuming from this run's checkpoints in %s", s.record_path, checkpoints.folder)
        return True
    return False


def adapt(s: Session, checked: validate.Checked, model) -> tuple[torch.nn.Module, object, ModelInfo]:
    """The method applied to the loaded model, sized to its budget: the config that trains is the one recorded
    (config.method holds the size value that trained, once)."""
    info = ModelInfo.from_cfg(s.config["model"], model.config)
    method_cfg = checked.method.sized(checked.method_cfg, info, model)
    model = checked.method.apply(model, method_cfg, info)
    info.train_head(model)
    s.record["config"]["method"].update(methods.recorded(s.record["config"]["method"], method_cfg))
    s.record["params"] = info.count_params(model)
    log.info("params: %s", s.record["params"])
    return model, method_cfg, info


def settle(s: Session, checked: validate.Checked, model, info: ModelInfo, n_train: int) -> None:
    """Start from another run's parameters (method.init_from: harness/init_from.py), then record what the run really
    does (`effective`: global batch, α, warm-up steps, ...) and how that compares with its protocol (`protocol`)."""
    init = None
    if checked.init_from:
        init = init_from.load(model, info, *checked.init_from, s.config["method"]["init_from"])
        s.record["provenance"]["init_from"] = init
        log.info("method.init_from: %s (%s, %d tensors; head: %s loaded, %s left)", init["run_dir"], init["task"],
                 init["tensors"], init["head_loaded"], init["head_skipped"])
    s.record["effective"] = effective.settings(s.record["config"], n_train, init)
    if s.record.get("protocol"):  # asked for (+protocol=...): what it applied, and the deviations
        s.record["protocol"].update(protocols.check(s.record["model"], s.record["task"], s.record["method"],
                                                    s.record["effective"], protocols.spec_of(s.config)) or {})
        for line in map(protocols.describe, s.record["protocol"]["deviations"]):
            log.warning("protocol %s: deviates in %s", s.record["protocol"]["name"], line)


def start_tracking(s: Session, method_name: str) -> None:
    s.tracker = make_tracker(s.config["tracker"], config=s.record["config"], output_dir=s.output_dir,
                             run_id=s.record["run_id"], job_type=method_name, tags=run_tags(s.record["config"]))
    s.record["tracking"] = {"wandb_dir": s.tracker.run_dir}


def train(s: Session, checked: validate.Checked, checkpoints: Checkpoints, pipeline, model, method_cfg) -> TrainResult:
    task, method = checked.task, checked.method
    resumed_at = results.now()

    def evaluate(m):
        with method.evaluating(m, method_cfg):
            return pipeline.evaluate(m)

    def on_progress(result: TrainResult):  # the history so far survives a crash or a kill in run.json
        if result.resumed_from and s.record["resumes"][-1:] != [{**result.resumed_from, "at": resumed_at}]:
            s.record["resumes"].append({**result.resumed_from, "at": resumed_at})
        s.record["metrics"] = metrics_of(result, task.headline, checked.trainer)
        s.write()

    return fit(model, pipeline.train, checked.trainer, collate=pipeline.collate, evaluate=evaluate,
               headline=pipeline.select_on or task.headline, tracker=s.tracker, seed=s.config["seed"],
               loss_fn=pipeline.loss_fn, checkpoints=checkpoints, on_progress=on_progress,
               hooks=step_hooks(method, method_cfg))


def step_hooks(method, method_cfg) -> StepHooks:
    """The method's training hooks (optimiser groups, regulariser, after_step) bound to the config that trains."""
    regularizer, after_step = method.regularizer, method.after_step
    groups = method.optimizer_groups and (lambda m, lr, decay: method.param_groups(m, method_cfg, lr, decay))
    return StepHooks(groups=groups, regularizer=regularizer and (lambda m: regularizer(m, method_cfg)),
                     after_step=after_step and (lambda m, step, total: after_step(m, method_cfg, step, total)))


def execute(s: Session, checked: validate.Checked, checkpoints: Checkpoints) -> None:
    task, method, record = checked.task, checked.method, s.record
    pipeline = tasks.build(task, s.config["model"], checked.trainer)
    faults.check_same_data((s.previous or {}).get("provenance"), pipeline.provenance)
    record["provenance"] = results.provenance(pipeline.provenance, None)  # versions, for failed runs too
    record["evaluation"] = pipeline.evaluated
    s.write()  # the data's checksums on disk before any checkpoint: a resume compares them
    torch.manual_seed(s.config["seed"])  # the task head's initialisation draws from torch's RNG
    model, method_cfg, info = adapt(s, checked, pipeline.build_model())
    settle(s, checked, model, info, len(pipeline.train))
    start_tracking(s, method.name)
    result = train(s, checked, checkpoints, pipeline, model, method_cfg)
    record["metrics"], record["cost"] = metrics_of(result, task.headline, checked.trainer), result.cost
    record["zero_shot"] = result.steps == 0 and not s.config["method"].get("init_from")   # the model as loaded
    record["provenance"]["device"] = result.cost["device"]
    if pipeline.after_run:  # e.g. decode once with the final model and save the generations
        with method.evaluating(model, method_cfg):
            pipeline.after_run(model, s.output_dir, record, s.tracker)
    if result.best_predictions:
        keep_predictions(s, pipeline, result.best_predictions)
    if method.save:  # the method's artifact, if it keeps one (full FT only with method.save_delta)
        method.save(model, method_cfg, info, s.output_dir / "adapter")
        if (s.output_dir / "adapter").is_dir():
            s.tracker.artifact(s.output_dir / "adapter", record)
    stats = result.best_stats or record["metrics"].get("generation_stats")   # a generation task's: its outputs'
    record["flags"] = flags.flags(task.headline, record["metrics"]["best"], stats, result.losses,
                                  result.nonfinite_skipped) + protocols.flags(record.get("protocol"))
    if record["flags"]:
        log.warning("run flagged: %s", ", ".join(record["flags"]))
    record["status"] = "completed"
    s.write()  # completed before the checkpoints go
    try:
        # a zero-shot run trained nothing: its parameters are the model's own (full FT's: the whole model), not kept
        checkpoints.finish(None if record["zero_shot"] else result.best_state, s.output_dir / BEST_FILE)
    except OSError as exc:
        log.warning("could not prune checkpoints in %s: %s", checkpoints.folder, exc)
    s.tracker.summary({"status": "completed", "headline": task.headline, "flags": record["flags"],
                       "best_epoch": record["metrics"]["best_epoch"],
                       **{f"best/{k}": v for k, v in record["metrics"]["best"].items()},
                       **{f"params/{k}": v for k, v in record["params"].items()},
                       **{f"cost/{k}": v for k, v in result.cost.items() if isinstance(v, (int, float))}})


def keep_predictions(s: Session, pipeline, rows: list[dict]) -> None:
    """The best evaluation's per-example rows beside run.json (predictions.jsonl.gz) and as a W&B table, and the
    headline metric's bootstrap interval over them in the record (metrics.interval)."""
    path = s.output_dir / PREDICTIONS
    write_atomic(path, lambda tmp: _write_jsonl_gz(tmp, rows))
    evaluated = s.record.get("evaluation") or {}
    s.record["predictions"] = {"file": PREDICTIONS, "rows": len(rows), "split": (evaluated.get("splits") or [None])[0]}
    if pipeline.interval:
        s.record["metrics"]["interval"] = pipeline.interval(rows)
    columns = list(rows[0])
    s.tracker.table("eval/predictions", columns, [[row[c] for c in columns] for row in rows])


def _write_jsonl_gz(path: str, rows: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def close(s: Session) -> None:
    record = s.record
    record["finished_at"] = results.now()
    if record["status"] != "completed":
        s.tracker.summary({"status": record["status"], "error": (record["error"] or {}).get("message")})
    s.tracker.finish(ok=record["status"] == "completed")
    try:
        if s.holding:
            faults.write_final(s.record_path, s.record)
    finally:
        s.lock.close()


def run(cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None) -> dict:
    """Train and evaluate one configuration; returns the run record (also written to `output_dir/run.json`).
    Resumes from the folder's checkpoints when its run.json is this run's (same run_id) and did not complete.
    `overrides`: the command line's (Hydra's own when None): they win over a protocol (`+protocol=paper`)."""
    prepared = protocols.prepare(OmegaConf.to_container(cfg, resolve=True), protocols.command_line(overrides))
    config = results.canonical(prepared.config)
    s = Session(config, results.new_record(config, Path(output_dir)), Path(output_dir), problems=prepared.problems)
    if prepared.info:
        s.record["protocol"] = prepared.info
    s.record["resumes"] = []  # {step, epoch, batch, at}: each checkpoint this run went on from, and when
    previous = results.read_record(s.record_path)
    if skip(previous, s.record, config):  # before any work
        return {**previous, "skipped": True}
    try:
        with faults.sigterm_raises():
            opened = open_run(s)
            if opened is None:
                return {**results.read_record(s.record_path), "skipped": True}
            execute(s, *opened)
    except Diverged as exc:
        s.record["status"], s.record["error"] = "diverged", results.error_info(exc)
    except KeyboardInterrupt as exc:  # SIGINT (Ctrl-C) or SIGTERM: resumable from the last checkpoint
        name = str(exc) or "SIGINT"
        s.record["status"] = "interrupted"
        s.record["error"] = {**results.error_info(exc), "message": f"interrupted by {name}; rerun the same command "
                                                                     "to resume from the last checkpoint"}
        raise
    except BaseException as exc:
        s.record["status"], s.record["error"] = "failed", results.error_info(exc)
        raise
    finally:
        close(s)
    return s.record
