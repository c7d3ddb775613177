"""Checkpoint and resume: a run killed midway and rerun with the same command ends with exactly the metrics of a run
that was never interrupted (CPU), keeps its history, and a finished run keeps only its best trainable state."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from harness import outputs
from harness.train.checkpoint import Checkpoints
from harness.errors import HarnessError
from harness.runner import run
from tests.conftest import compose_cfg, write_glue_fixture

LEARNS = ["method=full_ft", "trainer.lr=3e-3"]  # the tiny BERT learns the fixture within a few epochs at this rate


class Crash(BaseException):
    """Stands for a kill right after a checkpoint was written."""


def _crash_after_saves(monkeypatch, n):
    real, saves = Checkpoints.save, []

    def save(self, state):
        path = real(self, state)
        saves.append((state["step"], state["epoch"], state["batch"]))
        if len(saves) == n:
            raise Crash(saves[-1])
        return path

    monkeypatch.setattr(Checkpoints, "save", save)
    return saves


@pytest.fixture
def one_thread():
    """One intra-op thread: much faster on a shared 2-core machine, and both runs of a comparison use the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# LoRA's merge for evaluation adds BA to W0 and subtracts it again, which is not exact in floating point: the frozen W0
# of a run that evaluated drifts by rounding, while a resumed run reloads it clean (train losses then differ ~1e-8).
# AdaLoRA: killed at step 6 of its pruning phase (steps 3 … 14): the resumed run needs its importance averages back
# (with slow averages, β = 0.99, restarting them at zero changes which triplets are pruned: this case then fails).
# The LoRA family's case: PiSSA's residual rebuilt on resume, LoRA+'s parameter groups in the optimiser state, DoRA.
@pytest.mark.parametrize("method", [LEARNS, ["method=lora", "method.merge_for_eval=false", "trainer.lr=1e-2"],
                                    ["method=adalora", "method.target_r=2", "method.tinit=2", "method.tfinal=10",
                                     "method.delta_t=2", "method.beta1=0.99", "method.beta2=0.99", "trainer.lr=1e-2"],
                                    ["method=dora", "method.init=pissa", "method.lr_ratio=4.0",
                                     "method.merge_for_eval=false", "trainer.lr=1e-2"]],
                         ids=["full_ft", "lora", "adalora", "dora+pissa+lora_plus"])
def test_resume_mid_epoch_equals_uninterrupted(method, tiny_overrides, tmp_path, monkeypatch, one_thread):
    # fixture: 32 rows, batch 8 → 4 steps per epoch; checkpoints at steps 3 (mid-epoch), 4 (epoch end), 6 (mid-epoch)
    overrides = [*tiny_overrides, *method, "trainer.epochs=6", "trainer.checkpoint_every=3"]
    whole = run(compose_cfg(*overrides), tmp_path / "whole")

    saves = _crash_after_saves(monkeypatch, 3)
    with pytest.raises(Crash):
        run(compose_cfg(*overrides), tmp_path / "resumed")
    monkeypatch.undo()
    assert saves[-1] == (6, 2, 2)  # killed after batch 2 of epoch 2
    crashed = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert crashed["status"] == "failed" and [r["epoch"] for r in crashed["metrics"]["per_epoch"]] == [1]
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == [
        "step-00000004.pt", "step-00000006.pt"]  # keep_checkpoints=2

    resumed = run(compose_cfg(*overrides), tmp_path / "resumed")
    assert resumed["status"] == "completed"
    assert [(r["step"], r["epoch"], r["batch"]) for r in resumed["resumes"]] == [(6, 2, 2)]
    assert resumed["started_at"] == crashed["started_at"]
    assert resumed["metrics"]["per_epoch"] == whole["metrics"]["per_epoch"]  # train_loss included: same batches, RNG
    assert resumed["metrics"]["loss_curve"] == whole["metrics"]["loss_curve"]
    assert resumed["metrics"]["best"] == whole["metrics"]["best"]
    assert resumed["flags"] == whole["flags"]
    assert resumed["cost"]["steps"] == whole["cost"]["steps"] == 24

    # finished: the checkpoints are gone, the best trainable state stays, and it is the uninterrupted run's
    assert not (tmp_path / "resumed" / "checkpoints").exists()
    best_a, best_b = load_file(tmp_path / "whole" / "best.safetensors"), load_file(tmp_path / "resumed" / "best.safetensors")
    assert best_a.keys() == best_b.keys() and len(best_a) > 0
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_record_keeps_seed_and_library_versions(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "seed=5", "trainer.epochs=1"), tmp_path)
    assert record["seed"] == 5 and record["config"]["seed"] == 5
    assert {"torch", "transformers", "numpy"} <= set(record["provenance"]["packages"])


def test_skip_completed_skips_only_the_same_completed_run(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "trainer.epochs=1"]
    first = run(compose_cfg(*overrides), tmp_path)
    again = run(compose_cfg(*overrides, "skip_completed=true"), tmp_path)
    assert again["skipped"] and again["finished_at"] == first["finished_at"]
    assert json.loads((tmp_path / "run.json").read_text())["finished_at"] == first["finished_at"]
    # another configuration (another run_id) into the same folder: refused, the record left as it is ...
    with pytest.raises(HarnessError, match="holds the record of another configuration"):
        run(compose_cfg(*overrides, "seed=1"), tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] == first["run_id"]
    # ... unless overwrite=true replaces it
    other = run(compose_cfg(*overrides, "seed=1", "overwrite=true"), tmp_path)
    assert not other.get("skipped") and other["run_id"] != first["run_id"] and other["status"] == "completed"


def test_a_folder_in_use_is_refused_and_left_alone(tiny_overrides, tmp_path):
    with outputs.hold(tmp_path) as held:
        assert held
        with pytest.raises(outputs.RunLocked, match="in use by another process"):
            run(compose_cfg(*tiny_overrides), tmp_path)
    assert not (tmp_path / "run.json").exists()


def test_checkpoints_keep_the_newest_and_ignore_others(tmp_path):
    ckpt = Checkpoints(tmp_path, run_id="abc", every=2, keep=2)
    assert [ckpt.due(s) for s in (1, 2, 3, 4)] == [False, True, False, True]
    for step in (2, 4, 6):
        ckpt.save({"step": step, "x": torch.tensor([step])})
    assert [p.name for p in ckpt.files()] == ["step-00000004.pt", "step-00000006.pt"]
    (tmp_path / ".step-00000008.pt.x.tmp").write_bytes(b"half")   # a write a kill interrupted
    (tmp_path / "step-00000008.pt").write_bytes(b"not a checkpoint")
    assert ckpt.latest()["step"] == 6  # the unreadable one is skipped
    assert not list(tmp_path.glob(".*.tmp"))
    assert Checkpoints(tmp_path, run_id="other").latest() is None
    assert Checkpoints(tmp_path, run_id="abc", keep=0).save({"step": 10}) is None


def _default_sigint():
    """In the child before exec: SIGINT back to its default. A suite started in the background by a non-interactive
    shell (`pytest &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: a Ctrl-C test
    would see the run finish instead (a user's terminal delivers SIGINT with its default action)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # both runs the same thread count: same float results
    return subprocess.Popen([sys.executable, "-m", "harness.run", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)


def _only_run_dir(cwd):
    dirs = [p.parent for p in cwd.glob("outputs/*/*/*/run.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_sigkill_midway_then_the_same_command_resumes_exactly(tmp_path):
    data = write_glue_fixture(tmp_path / "data", n=96)  # 12 steps per epoch
    args = ["model=tiny-bert", "tracker=none", "trainer.progress=false", f"task.data_dir={data}",
            f"trainer.cache_dir={tmp_path / 'cache'}", "trainer.batch_size=8", "trainer.epochs=3",
            "trainer.checkpoint_every=3", *LEARNS]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _cli(args, tmp_path / "a")
    assert whole.wait(timeout=600) == 0, whole.stdout.read()[-3000:]
    expected = json.loads((_only_run_dir(tmp_path / "a") / "run.json").read_text())

    victim = _cli(args, tmp_path / "b")
    deadline = time.time() + 300
    while not list((tmp_path / "b").glob("outputs/*/*/*/checkpoints/step-*.pt")):
        assert victim.poll() is None and time.time() < deadline, "the run ended before writing a checkpoint"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    run_dir = _only_run_dir(tmp_path / "b")
    killed = json.loads((run_dir / "run.json").read_text())
    assert killed["status"] == "running"  # what kill -9 leaves; the rerun makes it right

    rerun = _cli(args, tmp_path / "b")
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    assert _only_run_dir(tmp_path / "b") == run_dir  # the same command found the same folder
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["run_id"] == expected["run_id"] == run_dir.name
    assert resumed["status"] == "completed" and len(resumed["resumes"]) == 1
    assert resumed["metrics"]["per_epoch"] == expected["metrics"]["per_epoch"]
    assert resumed["metrics"]["best"] == expected["metrics"]["best"]
    history = (killed["metrics"] or {}).get("per_epoch") or []
    assert resumed["metrics"]["per_epoch"][:len(history)] == history
    assert not (run_dir / "checkpoints").exists() and (run_dir / "best.safetensors").is_file()

    skip = _cli([*args, "skip_completed=true"], tmp_path / "b")
    assert skip.wait(timeout=600) == 0 and f"skipped: run {run_dir.name} already completed" in skip.stdout.read()
