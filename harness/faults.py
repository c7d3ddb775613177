"""What a run does when things go wrong around it: a full disk under its record, a signal, data that changed under
its checkpoints. Each ends in a record that says what happened, or one line and a non-zero exit."""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from harness.errors import HarnessError
from harness.io import write_json_atomic


def write_final(path: Path, record: dict) -> None:
    """The final record; when it cannot be written (a full disk), a small `failed` one saying why; when not even
    that, one line and a non-zero exit (HarnessError), never a record left at `running` silently."""
    try:
        write_json_atomic(path, record)
        return
    except OSError as exc:
        problem = exc
    small = {key: record.get(key) for key in ("schema_version", "run_id", "model", "task", "method", "seed",
                                               "output_dir", "started_at", "finished_at")}
    small.update(status="failed", error={"type": type(problem).__name__, "traceback": "",
                                         "message": f"the run record could not be written: {problem.strerror or problem}"
                                                    f" (the run ended {record['status']})"})
    try:
        write_json_atomic(path, small)
    except OSError as again:
        raise HarnessError(f"{path}: cannot be written ({again.strerror or again}); this run's outcome "
                           f"({record['status']}) is not recorded") from None
    record.update(small)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, `kill`), raised where the run is, so that its record says `interrupted`."""


def _on_sigterm(signum, frame):
    raise Interrupted("SIGTERM")


@contextlib.contextmanager
def sigterm_raises():
    """While a run is in progress (main thread only), SIGTERM raises Interrupted instead of ending the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def check_same_data(before: dict | None, provenance: dict) -> None:
    """A resumed run must read the data its checkpoints were trained on (`before`: the earlier attempt's record
    provenance): a changed file is refused, named."""
    previous = (before or {}).get("data") or {}
    for split, source in provenance.items():
        old = previous.get(split)
        if isinstance(old, dict) and isinstance(source, dict) and old.get("sha256") and old != source:
            raise HarnessError(f"{source.get('path', split)}: the {split} data changed since this run's checkpoints "
                               f"were written (sha256 {old['sha256'][:12]} → {str(source.get('sha256'))[:12]}); "
                               "rerun=true starts the run again on the new data")
