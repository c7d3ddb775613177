"""The run record: one `run.json` per run, written atomically (temp file + rename), the source of truth for reports."""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import subprocess
import traceback
from importlib import metadata
from pathlib import Path

from harness import catalog
from harness.io import read_json
from harness.train.config import IDENTITY_UNLESS_DEFAULT, NOT_IDENTITY

SCHEMA_VERSION = 1
PACKAGES = ("torch", "transformers", "datasets", "accelerate", "peft", "hydra-core", "wandb", "numpy", "scikit-learn",
            "scipy", "sacrebleu", "lora-harness")
REPO = Path(__file__).resolve().parent.parent


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def flatten(tree: dict, prefix: str = "", sep: str = ".") -> dict:
    """{'a': {'b': 1}} → {'a.b': 1}; lists stay values (targets, per_epoch, flags). The W&B config (one column per
    setting, so the runs table groups by `method.name`) and the report's one-row-per-run frame both use it."""
    out: dict = {}
    _flatten_into(out, tree, prefix, sep)
    return out


def _flatten_into(out: dict, tree: dict, prefix: str, sep: str) -> None:
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            _flatten_into(out, value, name, sep)
        else:
            out[name] = value


def unflatten(flat: dict, sep: str = ".") -> dict:
    """The inverse of flatten: {'a.b': 1} → {'a': {'b': 1}}; keys without `sep` stay as they are."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = str(key).split(sep)
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# Keys that say how a run is shown, watched or what it keeps on disk, never what it computes: left out of its identity
# (and never split a report's rows).
DISPLAY_KEYS = {"method": ("label", "order", "save_delta", "delta_types", "delta_dtype"), "task": ("label", "report"),
                "model": ("label",), "tracker": ("system_stats",)}
# Keys added after records existed whose null default means "not used": left out of the config (and so of the identity
# and the record) while null, so that the runs made before them keep their run_id and read the same in reports.
ABSENT_WHEN_NULL = {"method": ("init_from",), "trainer": ("warmup_steps",)}


def canonical(config: dict) -> dict:
    """`config` without the ABSENT_WHEN_NULL keys that are null (a shallow copy where one is dropped)."""
    out = dict(config)
    for group, keys in ABSENT_WHEN_NULL.items():
        node = out.get(group)
        if isinstance(node, dict) and any(k in node and node[k] is None for k in keys):
            out[group] = {k: v for k, v in node.items() if not (k in keys and v is None)}
    return out


def run_id(config: dict) -> str:
    """A run's identity: the hash of its resolved config, minus where it writes, how it reports progress (the trainer
    keys marked identity=False in harness/train/config.py), the later-added trainer keys while at their default
    (identity="unless_default"), how reports label it, and the null keys of ABSENT_WHEN_NULL."""
    ident = json.loads(json.dumps(canonical(config), default=str))
    for key in ("hydra", "skip_completed", "resume", "rerun", "overwrite"):
        ident.pop(key, None)
    trainer = ident.get("trainer") or {}
    for key in NOT_IDENTITY:
        trainer.pop(key, None)
    for key, default in IDENTITY_UNLESS_DEFAULT.items():
        if trainer.get(key, default) == default:
            trainer.pop(key, None)
    for group, keys in DISPLAY_KEYS.items():
        for key in keys:
            (ident.get(group) or {}).pop(key, None)
    method = ident.get("method") or {}
    if method.get("budget") is not None:
        # the budget picks the size (methods.Method.sized) and the record keeps the size that trained: the size is
        # hashed at the method's composed default, as when the run was launched, so the record keeps its run_id
        import methods   # the registry (and torch), only for a run with a budget

        key = methods.size_param(method.get("name"))
        if key in method:
            method[key] = catalog.method_meta(method["name"]).get(key, method[key])   # its conf/method yaml
    task = ident.get("task") or {}
    if task.get("data_dir") and os.path.isabs(task["data_dir"]):
        # one folder, one identity: `/work/sweep/../shared/data` is `/work/shared/data`. A relative path stays as
        # written (it is read from where the command runs, and the records made before this rule keep their run_id)
        task["data_dir"] = os.path.realpath(task["data_dir"])
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(data: dict, device: str) -> dict:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "packages": packages,
        "python": platform.python_version(),
        "data": data,
        "device": device,
        "host": platform.node(),
    }


def error_info(exc: BaseException) -> dict:
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return {"type": type(exc).__name__, "message": str(exc), "traceback": tail[-4000:]}


def new_record(config: dict, output_dir: Path) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id(config),
        "status": "running",
        "error": None,
        "model": (config.get("model") or {}).get("name"),
        "task": (config.get("task") or {}).get("name"),
        "task_family": (config.get("task") or {}).get("dataset"),   # the dataset module (glue, e2e, wikisql)
        "task_kind": (config.get("task") or {}).get("kind"),
        "method": (config.get("method") or {}).get("name"),
        "experiment": config.get("experiment"),
        "seed": config.get("seed"),
        "config": config,
        "params": None,
        "metrics": None,
        "flags": [],
        "cost": None,
        "provenance": None,
        "tracking": None,
        "output_dir": str(output_dir),
        "started_at": now(),
        "finished_at": None,
    }


def read_record(path: Path) -> dict | None:
    return read_json(path)


def load_runs(paths, wandb: str | None = None, skip=()):
    """The pandas entry point: run records → a DataFrame with one row per run, every field flattened
    (`config.method.r`, `metrics.best.accuracy`, `params.trainable_no_head`, `cost.train_seconds`) plus the report's
    derived columns (`variant`, `train_samples`, ...). `paths`: run.json files, folders (searched recursively) or
    globs; `wandb`: also the runs of this W&B project (ENTITY/PROJECT); `skip`: files that are not run records (the
    report's benchmark JSONs). What could not be read is in `frame.attrs`: `problems` [(path, what is wrong)] and
    `unmatched` (inputs that matched no file).

        from harness.results import load_runs
        runs = load_runs(["multirun/glue_table2_cpu"])
        runs.groupby(["task", "method"])["metrics.best.accuracy"].median()
    """
    from harness.report.records import find_run_files, load_records, records_to_frame, wandb_records

    files, unmatched = find_run_files([str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths])
    skipped = {Path(p) for p in skip}
    with _collector_paused():
        records, problems = load_records([f for f in files if Path(f) not in skipped])
        if wandb:
            more, bad = wandb_records(wandb)
            records, problems = records + more, problems + bad
        frame = records_to_frame(records)
    frame.attrs.update(problems=problems, unmatched=unmatched)
    return frame


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while records are read: thousands of records are millions of new objects (parsed
    JSON, none in a cycle), and each of the collector's full passes over them, every few thousand records, costs a
    fraction of a second. Reference counting frees them as always."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
