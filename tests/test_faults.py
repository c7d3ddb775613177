"""Faults around a run, with real processes where the fault is a process's: data changed between a kill and the rerun,
a truncated record beside valid checkpoints, SIGINT and SIGTERM, a full disk under the record, stale temporary files,
a rerun of a completed command."""
from __future__ import annotations

import errno
import gzip
import json
import signal
import time

import pytest

import harness.faults
import harness.runner
from harness.errors import HarnessError
from harness.runner import run
from tests.conftest import compose_cfg, write_glue_fixture
from tests.test_resume import _cli, _only_run_dir

SLOW = ["model=tiny-bert", "tracker=none", "trainer.progress=false", "trainer.batch_size=8",
        "trainer.checkpoint_every=2"]


def _start_and_wait_for_a_checkpoint(tmp_path, extra=(), epochs=3):
    """A run started in its own process, once it has written its first checkpoint. `epochs` long enough that it is
    still training when the test acts on it (a signal sent to a run that has already ended tests nothing)."""
    data = write_glue_fixture(tmp_path / "data", n=96)
    args = [*SLOW, f"trainer.epochs={epochs}", f"task.data_dir={data}", f"trainer.cache_dir={tmp_path / 'cache'}",
            *extra]
    (tmp_path / "w").mkdir()
    proc = _cli(args, tmp_path / "w")
    deadline = time.time() + 300
    while not list((tmp_path / "w").glob("outputs/*/*/*/checkpoints/step-*.pt")):
        assert proc.poll() is None and time.time() < deadline, "the run ended before writing a checkpoint"
        time.sleep(0.02)
    return proc, args, data


def test_data_changed_between_a_kill_and_the_rerun_is_refused_and_named(tmp_path):
    proc, args, data = _start_and_wait_for_a_checkpoint(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    train = data / "glue" / "SST-2" / "train.tsv.gz"
    with gzip.open(train, "at", encoding="utf-8") as handle:
        handle.write("one more sentence\t1\n")
    rerun = _cli(args, tmp_path / "w")
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.tsv.gz: the train data changed since this run's checkpoints" in errors[0]
    assert json.loads((_only_run_dir(tmp_path / "w") / "run.json").read_text())["status"] == "failed"


def test_a_truncated_record_beside_checkpoints_resumes(tmp_path):
    proc, args, _ = _start_and_wait_for_a_checkpoint(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run_dir = _only_run_dir(tmp_path / "w")
    record = run_dir / "run.json"
    record.write_text(record.read_text()[:40])   # what a kill during a non-atomic write, or a full disk, leaves
    rerun = _cli(args, tmp_path / "w")
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-2000:]
    assert "resuming at step" in output and "is unreadable; resuming from this run's checkpoints" in output
    done = json.loads(record.read_text())
    assert done["status"] == "completed" and done["metrics"]["per_epoch"][-1]["epoch"] == 3


@pytest.mark.parametrize("sig,name,code", [(signal.SIGINT, "SIGINT", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_signal_leaves_an_interrupted_record_naming_it(sig, name, code, tmp_path):
    # 3 epochs of this tiny run take ~1.5 s after its first checkpoint: on a loaded machine the signal could arrive
    # after the run had ended (seen once); 200 epochs leave it a minute to arrive, and the signal ends the run anyway
    proc, args, _ = _start_and_wait_for_a_checkpoint(tmp_path, epochs=200)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, output[-2000:]
    assert f"interrupted by {name}" in output and "Traceback" not in output
    record = json.loads((_only_run_dir(tmp_path / "w") / "run.json").read_text())
    assert record["status"] == "interrupted" and record["error"]["message"].startswith(f"interrupted by {name}")
    rerun = _cli(args, tmp_path / "w")   # and the same command resumes it
    assert rerun.wait(timeout=600) == 0
    assert json.loads((_only_run_dir(tmp_path / "w") / "run.json").read_text())["status"] == "completed"


def _full_disk_after(monkeypatch, allowed):
    """Writes of the run record fail with ENOSPC once `allowed(record)` says no."""
    real = harness.faults.write_json_atomic
    state = {"full": False}

    def write(path, record):
        if state["full"] or not allowed(record):
            state["full"] = True
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, record)

    monkeypatch.setattr(harness.faults, "write_json_atomic", write)
    monkeypatch.setattr(harness.runner, "write_json_atomic", write)
    return state


def test_a_full_disk_leaves_a_failed_record_saying_why(tiny_overrides, tmp_path, monkeypatch):
    """The completed record cannot be written, a small one can: it says failed, and why."""
    real = harness.faults.write_json_atomic

    def write(path, record):
        if record.get("status") == "completed":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, record)

    monkeypatch.setattr(harness.faults, "write_json_atomic", write)
    monkeypatch.setattr(harness.runner, "write_json_atomic", write)
    with pytest.raises(OSError):
        run(compose_cfg(*tiny_overrides, "trainer.epochs=1"), tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]["message"]


def test_a_disk_too_full_for_any_record_is_one_line_and_never_silent(tiny_overrides, tmp_path, monkeypatch):
    _full_disk_after(monkeypatch, lambda record: record.get("status") == "running" and not record.get("params"))
    with pytest.raises(HarnessError, match=r"run\.json: cannot be written \(No space left on device\); this run's "
                                           r"outcome \(failed\) is not recorded"):
        run(compose_cfg(*tiny_overrides, "trainer.epochs=1"), tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"  # the last write that fitted


def test_stale_temporary_files_are_cleaned(tiny_overrides, tmp_path):
    (tmp_path / ".run.json.abc123.tmp").write_text("{half")
    assert run(compose_cfg(*tiny_overrides, "trainer.epochs=1"), tmp_path)["status"] == "completed"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_rerun_of_a_completed_command_is_skipped_unless_asked(tiny_overrides, tmp_path):
    first = run(compose_cfg(*tiny_overrides, "trainer.epochs=1"), tmp_path)
    again = run(compose_cfg(*tiny_overrides, "trainer.epochs=1"), tmp_path)
    assert again["skipped"] and again["finished_at"] == first["finished_at"]
    fresh = run(compose_cfg(*tiny_overrides, "trainer.epochs=1", "rerun=true"), tmp_path)
    assert not fresh.get("skipped") and fresh["status"] == "completed" and fresh["started_at"] >= first["finished_at"]


def test_another_configuration_into_a_fixed_run_folder_is_refused(tmp_path):
    """Two commands with one hydra.run.dir: the second, another configuration, is refused and names what differs."""
    data = write_glue_fixture(tmp_path / "data")
    args = ["model=tiny-bert", "tracker=none", "trainer.progress=false", "trainer.epochs=1", f"task.data_dir={data}",
            f"trainer.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'fixed'}"]
    first = _cli(args, tmp_path)
    assert first.wait(timeout=600) == 0
    second = _cli([*args, "seed=1"], tmp_path)
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "holds the record of another configuration" in errors[0]
    assert "seed: 0 → 1" in errors[0] and "overwrite=true" in errors[0]
    assert json.loads((tmp_path / "fixed" / "run.json").read_text())["status"] == "completed"  # left as it was
