"""Experiment tracking: Weights & Biases (offline unless `tracker.mode=online`) or nothing (`tracker=none`).

W&B is a sink, never the only copy (run.json is the source of truth), and it must never hang or kill a run: online
without credentials, or an init that fails, falls back to offline with one warning; if even that fails we go on without.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import methods
from harness import results

log = logging.getLogger(__name__)


class NullTracker:
    run_dir: str | None = None

    def log(self, metrics: dict, step: int | None = None):
        pass

    def summary(self, values: dict):
        pass

    def table(self, key: str, columns: list[str], rows: list[list]):
        pass

    def finish(self, ok: bool = True):
        pass


class WandbTracker(NullTracker):
    def __init__(self, run):
        self.run = run
        self.run_dir = str(Path(run.dir).parent) if getattr(run, "dir", None) else None

    def log(self, metrics, step=None):
        try:
            self.run.log(metrics, step=step)
        except Exception as exc:  # a sink's failure must not end a training run
            log.warning("W&B log failed (%s); continuing", exc)

    def summary(self, values):
        try:
            self.run.summary.update(values)
        except Exception as exc:
            log.warning("W&B summary failed (%s); continuing", exc)

    def table(self, key, columns, rows):
        import wandb

        self.log({key: wandb.Table(columns=columns, data=rows)})

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


def run_name(config: dict) -> str:
    return f"{config['task']['name']}-{config['method']['name']}-s{config['seed']}"


def run_tags(config: dict) -> list[str]:
    """model / task / method, and the size: `budget=<n>` when the method picks its size from a budget, else the
    method's own size knob (`r=8`, `l_p=16`, …) when it has one."""
    method = config.get("method") or {}
    tags = [config["model"]["name"], config["task"]["name"], method.get("name")]
    key = methods.size_key(method)
    if key:
        tags.append(f"{key}={method[key]}")
    return [str(t) for t in tags if t is not None]


def make_tracker(tracker_cfg: dict, *, config: dict, output_dir: Path, name: str, job_type: str, tags: list[str]):
    if tracker_cfg.get("name", "none") == "none" or tracker_cfg.get("mode") == "disabled":
        return NullTracker()
    import wandb

    mode = tracker_cfg.get("mode", "offline")
    if mode not in ("offline", "online"):
        from harness.errors import ConfigError

        raise ConfigError(f"tracker.mode={mode!r} is not valid; valid choices: offline, online, disabled")
    if mode == "online" and not _has_credentials():
        log.warning("tracker.mode=online but no W&B credentials (WANDB_API_KEY or `wandb login`): logging offline instead")
        mode = "offline"
    kwargs = dict(project=tracker_cfg.get("project"), entity=tracker_cfg.get("entity"), group=tracker_cfg.get("group"), job_type=job_type,
                  tags=sorted(set([*tags, *(tracker_cfg.get("tags") or [])])), name=name, config=results.flatten(config),
                  dir=str(output_dir), reinit="finish_previous")
    for attempt in (mode, "offline") if mode == "online" else (mode,):
        try:
            settings = wandb.Settings(console="off", silent=True, init_timeout=90, x_disable_stats=True)
            return WandbTracker(wandb.init(mode=attempt, settings=settings, **kwargs))
        except Exception as exc:
            log.warning("W&B init (%s) failed: %s", attempt, exc)
    log.warning("W&B is unavailable: this run is tracked in run.json only")
    return NullTracker()
