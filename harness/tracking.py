"""Experiment tracking: Weights & Biases (offline unless `tracker.mode=online`) or nothing (`tracker=none`).

W&B is a sink, never the only copy (run.json is the source of truth), and it must never hang or kill a run: online
without credentials, or an init that fails, falls back to offline with one warning; if even that fails we go on without.

What a W&B user finds: the run's W&B id is its identity (`run_id`, the config's hash) with `resume="allow"`, so a
resumed or rerun command continues its own W&B run; a name that says model, task, method, size and seed; every eval
metric defined against the `epoch` axis with a max (min for losses and failure counts) summary; the method's artifact
(LoRA's adapter folder) as a W&B artifact of type `model` with its config; system metrics and console capture on a
GPU run (`tracker.system_stats`).
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import methods
from harness import results
from harness.errors import ConfigError

log = logging.getLogger(__name__)
# The summary W&B keeps of an eval metric (define_metric): the best value by the metric's direction. Metrics not named
# here are better when higher (every headline metric, as the training loop selects on).
SUMMARY = {"loss": "min", "parse_failures": "min", "exec_failures": "min", "gold_exec_failures": "min", "n": "last"}


class NullTracker:
    run_dir: str | None = None

    def log(self, metrics: dict, step: int | None = None):
        pass

    def summary(self, values: dict):
        pass

    def table(self, key: str, columns: list[str], rows: list[list]):
        pass

    def artifact(self, folder: Path, record: dict):
        pass

    def finish(self, ok: bool = True):
        pass


def summary_of(key: str) -> str:
    """`eval/loss` → min, `eval/dev_mismatched/accuracy` → max: the summary by the metric's direction."""
    return SUMMARY.get(key.rsplit("/", 1)[-1], "max")


class WandbTracker(NullTracker):
    def __init__(self, run):
        self.run = run
        self.run_dir = str(Path(run.dir).parent) if getattr(run, "dir", None) else None
        self.defined: set[str] = set()
        self._call("define_metric", "epoch")

    def _call(self, what: str, *args, **kwargs):
        try:
            return getattr(self.run, what)(*args, **kwargs)
        except Exception as exc:  # a sink's failure must not end a training run
            log.warning("W&B %s failed (%s); continuing", what, exc)

    def define(self, metrics: dict) -> None:
        """Each numeric eval metric, the first time it is logged: on the epoch axis, summarised by its direction."""
        for key, value in metrics.items():
            if key.startswith("eval/") and key not in self.defined and isinstance(value, (int, float)):
                self._call("define_metric", key, step_metric="epoch", summary=summary_of(key))
                self.defined.add(key)

    def log(self, metrics, step=None):
        self.define(metrics)
        self._call("log", metrics, step=step)

    def summary(self, values):
        try:
            self.run.summary.update(values)
        except Exception as exc:
            log.warning("W&B summary failed (%s); continuing", exc)

    def table(self, key, columns, rows):
        import wandb

        self.log({key: wandb.Table(columns=columns, data=rows)})

    def artifact(self, folder, record):
        """The method's saved folder as a W&B artifact (type `model`, named `<method>-<run_id>`), its metadata the
        run's identity and the method's trained config, so the artifact's lineage leads back to this run."""
        import wandb

        metadata = {"run_id": record["run_id"], "model": record["model"], "task": record["task"],
                    "method": record["config"]["method"], "params": record.get("params")}
        try:
            item = wandb.Artifact(f"{record['method']}-{record['run_id']}", type="model", metadata=metadata)
            item.add_dir(str(folder))
        except Exception as exc:
            log.warning("W&B artifact of %s failed (%s); continuing", folder, exc)
            return
        self._call("log_artifact", item)

    def finish(self, ok=True):
        try:
            self.run.finish(exit_code=0 if ok else 1)
        except Exception as exc:
            log.warning("W&B finish failed (%s)", exc)


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def size_tag(method: dict) -> str | None:
    """`r=8`, `l_p=16`, `budget=300000`: the setting that sizes the run, or None for a method without a size."""
    key = methods.size_key(method)
    return f"{key}={method[key]}" if key else None


def run_name(config: dict, run_id: str) -> str:
    """`minilm-sst2-lora-r=8-s0-3fa2c1`: model, task, method, size, seed, and the head of the run's identity (runs
    that differ in any other setting, a target set or an init, are told apart by it)."""
    method = config.get("method") or {}
    parts = [config["model"]["name"], config["task"]["name"], method.get("name"), size_tag(method),
             f"s{config['seed']}", run_id[:6]]
    return "-".join(str(p) for p in parts if p is not None)


def run_tags(config: dict) -> list[str]:
    """model / task / method, and the size: `budget=<n>` when the method picks its size from a budget, else the
    method's own size knob (`r=8`, `l_p=16`, …) when it has one."""
    method = config.get("method") or {}
    tags = [config["model"]["name"], config["task"]["name"], method.get("name"), size_tag(method)]
    return [str(t) for t in tags if t is not None]


def system_stats_on(tracker_cfg: dict) -> bool:
    """`tracker.system_stats`: true, false, or auto (on when CUDA is available: utilisation charts of a GPU run)."""
    value = tracker_cfg.get("system_stats", "auto")
    if not (value == "auto" or isinstance(value, bool)):
        raise ConfigError(f"tracker.system_stats={value!r} is not valid; valid choices: auto, true, false")
    if value == "auto":
        import torch

        return torch.cuda.is_available()
    return bool(value)


def settings(tracker_cfg: dict):
    """wandb.Settings: never noisy or blocking; system metrics and console capture as `tracker.system_stats` says."""
    import wandb

    stats = system_stats_on(tracker_cfg)
    return wandb.Settings(console="wrap" if stats else "off", silent=True, init_timeout=90, x_disable_stats=not stats)


def uses_wandb(tracker_cfg) -> bool:
    """Whether a run with this `tracker` config starts W&B (not `tracker=none`, not `tracker.mode=disabled`)."""
    return tracker_cfg.get("name", "none") != "none" and tracker_cfg.get("mode") != "disabled"


def preload(tracker_cfg) -> None:
    """W&B's modules imported now, before torch and transformers, when the run will start W&B (harness/run.py calls
    this first). wandb.init imports W&B's public API (wandb.apis.public), whose pydantic models read their docstrings
    through `inspect`, which scans every loaded module for each: after torch and transformers (~5,000 modules) that
    import takes 0.5 s on a quiet CPU and over 1 s on a busy one, before them 0.2 s (issue 18: start-up)."""
    if uses_wandb(tracker_cfg):
        with contextlib.suppress(Exception):   # a W&B that cannot import fails where the tracker starts, as before
            import wandb.apis.public  # noqa: F401


def make_tracker(tracker_cfg: dict, *, config: dict, output_dir: Path, run_id: str, job_type: str, tags: list[str]):
    """The run's tracker: W&B with id = `run_id` (resumed when it exists), or a NullTracker."""
    if not uses_wandb(tracker_cfg):
        return NullTracker()
    import wandb

    mode = tracker_cfg.get("mode", "offline")
    if mode not in ("offline", "online"):
        raise ConfigError(f"tracker.mode={mode!r} is not valid; valid choices: offline, online, disabled")
    if mode == "online" and not _has_credentials():
        log.warning("tracker.mode=online but no W&B credentials (WANDB_API_KEY or `wandb login`): logging offline instead")
        mode = "offline"
    kwargs = dict(project=tracker_cfg.get("project"), entity=tracker_cfg.get("entity"), group=tracker_cfg.get("group"),
                  job_type=job_type, tags=sorted(set([*tags, *(tracker_cfg.get("tags") or [])])),
                  name=run_name(config, run_id), id=run_id, resume="allow", config=results.flatten(config),
                  dir=str(output_dir), reinit="finish_previous", settings=settings(tracker_cfg))
    for attempt in (mode, "offline") if mode == "online" else (mode,):
        try:
            return WandbTracker(wandb.init(mode=attempt, **kwargs))
        except Exception as exc:
            log.warning("W&B init (%s) failed: %s", attempt, exc)
    log.warning("W&B is unavailable: this run is tracked in run.json only")
    return NullTracker()
