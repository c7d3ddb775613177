"""Failure isolation: one run's exception is written to its run.json and the sweep goes on; the exit code says that
something failed; a non-finite loss ends a run as `diverged` (after the configured skips), never as a NaN result."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import harness.runner
from harness.runner import run
from harness.tracking import NullTracker
from harness.train.config import TrainerConfig
from harness.train.loop import Diverged, fit
from tests.conftest import REPO, compose_cfg

# A train-time crash no start-up check can see: a 1000-word embedding table cannot look up the tokenizer's ids (the
# fixture's words are above 1000 in MiniLM's vocabulary). (Too few positions is caught at start-up now.)
CRASHES_IN_TRAINING = "model.config.vocab_size=1000"


def _multirun(tmp_path, tiny_overrides, *sweep):
    cmd = [sys.executable, "-m", "harness.run", "-m", *tiny_overrides, "trainer.epochs=1",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", *sweep]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def _records(folder):
    return {r["config"]["trainer"]["lr"] if r["config"] else None: r
            for r in (json.loads(p.read_text()) for p in folder.rglob("run.json"))}


def test_multirun_with_a_poisoned_config_finishes_the_others(tiny_overrides, tmp_path):
    proc = _multirun(tmp_path, tiny_overrides, "trainer.lr=1e-3,-1,2e-3")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: trainer.lr must be > 0, got -1" in proc.stderr
    assert "1 run(s) did not complete" in proc.stderr
    records = _records(tmp_path / "sweep")
    assert {lr: r["status"] for lr, r in records.items()} == {1e-3: "completed", -1: "failed", 2e-3: "completed"}
    assert records[-1]["error"]["message"] == "trainer.lr must be > 0, got -1"


def test_train_time_crash_in_a_joblib_worker_is_recorded_and_reported(tiny_overrides, tmp_path):
    proc = _multirun(tmp_path, tiny_overrides, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "model.config.vocab_size=1000,30522")
    assert proc.returncode == 1, proc.stderr[-3000:]  # the failure happened in a worker process
    assert "1 run(s) did not complete" in proc.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "sweep").rglob("run.json")]
    by_size = {r["config"]["model"]["config"]["vocab_size"]: r for r in records}
    assert by_size[30522]["status"] == "completed"
    failed = by_size[1000]
    assert failed["status"] == "failed" and failed["error"]["type"] in failed["error"]["traceback"]
    assert failed["params"] is not None and "torch" in failed["provenance"]["packages"]  # it got as far as training


class RecordingTracker(NullTracker):
    def __init__(self):
        self.summaries, self.finished = [], None

    def summary(self, values):
        self.summaries.append(values)

    def finish(self, ok=True):
        self.finished = ok


def test_a_failed_run_is_logged_to_the_tracker(tiny_overrides, tmp_path, monkeypatch):
    tracker = RecordingTracker()
    monkeypatch.setattr(harness.runner, "make_tracker", lambda *a, **k: tracker)
    with pytest.raises(Exception):
        run(compose_cfg(*tiny_overrides, CRASHES_IN_TRAINING), tmp_path)
    assert tracker.summaries[-1]["status"] == "failed" and tracker.summaries[-1]["error"]
    assert tracker.finished is False
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("retries", [0, 2])
def test_exploding_loss_ends_diverged_not_nan(retries, tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=full_ft", "trainer.lr=1e10", "trainer.max_grad_norm=null",
                             f"trainer.nonfinite_retries={retries}"), tmp_path)
    assert record["status"] == "diverged"
    message = record["error"]["message"]
    assert message.startswith("non-finite training loss (nan)")
    assert (f"after {retries} skipped batch(es)" in message) == (retries > 0)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "diverged"


def _toy(nan_at: set[int]):
    """A linear classifier on separable points, whose loss is NaN on the listed calls."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = [{"input_ids": x[i], "labels": int(x[i, 0] > 0)} for i in range(32)]
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss = nn.functional.cross_entropy(model(batch["input_ids"]), batch["labels"])
        return loss * math.nan if len(calls) in nan_at else loss

    def evaluate(model):
        xs = torch.stack([d["input_ids"] for d in data])
        ys = torch.tensor([d["labels"] for d in data])
        return {"accuracy": float((model(xs).argmax(-1) == ys).float().mean())}

    return data, loss_fn, evaluate


@pytest.mark.parametrize("retries,outcome", [(0, "diverged"), (1, "diverged"), (2, "completed")])
def test_nonfinite_batches_are_skipped_up_to_the_retries(retries, outcome):
    data, loss_fn, evaluate = _toy(nan_at={3, 6})
    tcfg = TrainerConfig(lr=0.1, epochs=2, batch_size=8, progress=False, device="cpu", warmup_ratio=0.0,
                         nonfinite_retries=retries)
    model = nn.Linear(4, 2)
    kwargs = dict(collate=torch.utils.data.default_collate, evaluate=evaluate, headline="accuracy",
                  tracker=NullTracker(), seed=0, loss_fn=loss_fn)
    if outcome == "diverged":
        with pytest.raises(Diverged, match="non-finite training loss"):
            fit(model, data, tcfg, **kwargs)
        return
    result = fit(model, data, tcfg, **kwargs)
    assert result.nonfinite_skipped == 2 and len(result.losses) == 8 - 2
    assert all(math.isfinite(p.sum().item()) for p in model.parameters())
    assert result.steps == 8  # a skipped batch still counts as a step of the schedule
