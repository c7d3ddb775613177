"""Output folders: one per run identity, held by one process at a time, and failures reported across processes.

The default folders (conf/config.yaml) end in `${run_id:}`, the hash of the resolved config (`results.run_id`), so that
the same command maps to the same folder: rerunning it after a crash finds the run's checkpoints and resumes, and
`skip_completed` finds its finished record. A folder is locked (`flock` on `.lock`, released by the kernel when its
process dies, `kill -9` included) while a run is in it, so two shells or launcher workers that reach the same run never
write over each other: the second one is told, and a sweep moves on.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import platform
from pathlib import Path

from omegaconf import OmegaConf

from harness import results
from harness.errors import HarnessError

FAILURES_ENV = "HARNESS_FAILURES_FILE"


def _run_id(*, _root_) -> str:
    """`${run_id:}`: the identity of the configuration being composed (everything but the `hydra` node), with its
    protocol's values applied as the run will apply them (harness/protocols: the command line's overrides win)."""
    from harness import protocols

    config = OmegaConf.masked_copy(_root_, [key for key in _root_ if key != "hydra"])
    overrides = OmegaConf.select(_root_, "hydra.overrides.task", default=None)
    prepared = protocols.prepare(OmegaConf.to_container(config, resolve=True), overrides or ())
    return results.run_id(prepared.config)


def _coalesce(*values):
    """`${coalesce:${experiment},adhoc}`: the first value that is not null."""
    return next((value for value in values if value is not None), None)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("run_id", _run_id, replace=True)
    OmegaConf.register_new_resolver("coalesce", _coalesce, replace=True)


class RunLocked(HarnessError):
    """Another live process is running in this output folder."""


@contextlib.contextmanager
def hold(folder: Path):
    """Yields True while this process holds `folder` (False, and nothing held, when another process does)."""
    handle = open(folder / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        yield False
        return
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}\n")
        handle.flush()
        yield True
    finally:
        handle.close()


def holder(folder: Path) -> str:
    try:
        return (folder / ".lock").read_text().strip() or "unknown process"
    except OSError:
        return "unknown process"


def note_failure(output_dir: str, code: int) -> None:
    """Tell the launching process that a run did not complete, from a launcher's worker process too."""
    path = os.environ.get(FAILURES_ENV)
    if path:
        with open(path, "a") as handle:  # one short O_APPEND write per line: lines from workers do not interleave
            handle.write(f"{code}\t{output_dir}\n")


def read_failures(path: str | Path) -> list[tuple[str, int]]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    return [(d, int(c)) for c, d in (line.split("\t", 1) for line in lines if "\t" in line)]


def clean_stale(folder: Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left (`.<name>.*.tmp`, harness/io.py); returns them."""
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def foreign_record(folder: Path, previous: dict, record: dict) -> HarnessError:
    """The error for a folder that holds another configuration's record (a fixed hydra.run.dir reused), naming the
    settings that differ."""
    what = " / ".join(str(previous.get(k)) for k in ("task", "method", "model") if previous.get(k))
    return HarnessError(f"{folder} holds the record of another configuration (run {previous.get('run_id')}: {what}, "
                        f"{previous.get('status')}), not this one (run {record['run_id']}; differing: "
                        f"{differing(previous.get('config') or {}, record['config'])}); overwrite=true replaces it, or "
                        "set hydra.run.dir to another folder")


def differing(before: dict, now: dict, most: int = 5) -> str:
    """`key: old → new` for the settings (flattened) that differ between two configs, the first `most` of them."""
    old, new = results.flatten(before), results.flatten(now)
    keys = sorted(k for k in set(old) | set(new) if not k.startswith("hydra") and old.get(k) != new.get(k))
    shown = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys[:most]]
    return ", ".join(shown) + (f" and {len(keys) - most} more" if len(keys) > most else "") if keys else "nothing"
