"""What an offline W&B run holds, read back from its transaction log (`offline-run-*/run-*.wandb`): the eval metrics
defined on the epoch axis with a best-value summary, the run's identity as its W&B id (one W&B run across a kill and a
resume), a name that tells runs apart, and the LoRA adapter as an artifact with its config."""
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2

from harness import results, tracking
from harness.errors import ConfigError
from tests.conftest import compose_cfg, write_glue_fixture
from tests.test_export import tiny_lora_run

BLOCK = 32 * 1024   # the log's block size; a record never starts in a block's last 6 bytes (7-byte record header)
FULL, LAST = 1, 4   # record types: whole, or the last piece of a record split across blocks


def wandb_records(path: Path) -> list:
    """The protobuf records of a `.wandb` transaction log (LevelDB's log format under a 7-byte `:W&B` header; each
    record: crc32 (4), length (2), type (1), data). A record a kill cut short ends the list."""
    data, out, pieces, pos = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + length > len(data):
            break
        pieces += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            out.append(record)
            pieces = b""
    return out


def of_type(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def items(entries) -> dict:
    """History or summary items → {key: value}; a key is `key` or its `nested_key` path."""
    return {e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in entries}


def logs_of(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob("wandb/offline-run-*/run-*.wandb"))


def wandb_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith("tracker=")] + ["tracker=wandb"]


@pytest.fixture(scope="module")
def lora_wandb_run(glue_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("wandb_run")
    record = tiny_lora_run(out, glue_dir, "tracker=wandb", "trainer.epochs=2")
    (log,) = logs_of(out / "run")
    return record, wandb_records(log)


def test_eval_metrics_are_defined_on_the_epoch_axis_with_best_summaries(lora_wandb_run):
    record, records = lora_wandb_run
    metrics = {m.name: m for m in of_type(records, "metric")}
    assert "epoch" in metrics
    accuracy, loss = metrics["eval/accuracy"], metrics["eval/loss"]
    assert accuracy.step_metric == "epoch" and accuracy.summary.max and not accuracy.summary.min
    assert loss.step_metric == "epoch" and loss.summary.min and not loss.summary.max
    assert "eval/predictions" not in metrics  # a table, not a metric
    rows = [items(h.item) for h in of_type(records, "history")]
    evals = [row for row in rows if "eval/accuracy" in row]
    assert [row["epoch"] for row in evals] == [1, 2]
    assert [row["eval/accuracy"] for row in evals] == [r["accuracy"] for r in record["metrics"]["per_epoch"]]
    last_summary = {k: v for s in of_type(records, "summary") for k, v in items(s.update).items()}
    assert last_summary["eval/accuracy"] == {"max": record["metrics"]["best"]["accuracy"]}


def test_the_wandb_run_is_the_run_identity_and_its_name_says_what_ran(lora_wandb_run):
    record, records = lora_wandb_run
    (wb_run,) = of_type(records, "run")
    assert wb_run.run_id == record["run_id"] and wb_run.resume
    assert wb_run.display_name == f"tiny-bert-sst2-lora-r=8-s0-{record['run_id'][:6]}"


def test_the_adapter_is_a_model_artifact_with_its_config(lora_wandb_run):
    record, records = lora_wandb_run
    (artifact,) = [a for a in of_type(records, "artifact") if a.type == "model"]
    assert (artifact.type, artifact.name, artifact.run_id) == ("model", f"lora-{record['run_id']}", record["run_id"])
    metadata = json.loads(artifact.metadata)
    assert metadata["run_id"] == record["run_id"] and metadata["method"]["r"] == 8
    assert metadata["method"]["targets"] == ["q", "v"]
    assert sorted(c.path for c in artifact.manifest.contents) == ["adapter.safetensors", "adapter_config.json"]


def test_run_names_differ_by_model_size_seed_and_identity():
    def config(model="minilm", r=8, seed=0):
        return {"model": {"name": model}, "task": {"name": "sst2"}, "method": {"name": "lora", "r": r}, "seed": seed}

    names = {tracking.run_name(config(**kw), "abcdef0123456789")
             for kw in ({}, {"model": "tiny-bert"}, {"r": 4}, {"seed": 1})}
    assert len(names) == 4 and "minilm-sst2-lora-r=8-s0-abcdef" in names
    assert tracking.run_name(config(), "abcdef0123456789") != tracking.run_name(config(), "123456abcdef0000")


def test_system_stats_follow_the_setting_and_stay_out_of_the_identity(tiny_overrides):
    cpu = tracking.settings({"system_stats": "auto"})  # no CUDA here: off
    assert cpu.x_disable_stats and cpu.console == "off"
    on = tracking.settings({"system_stats": True})
    assert not on.x_disable_stats and on.console == "wrap"
    with pytest.raises(ConfigError, match="tracker.system_stats='sometimes' is not valid; valid choices: auto, true"):
        tracking.settings({"system_stats": "sometimes"})
    settings = [f"tracker.system_stats={v}" for v in ("auto", "true", "false")] + ["~tracker.system_stats"]
    configs = [compose_cfg(*wandb_overrides(tiny_overrides), setting) for setting in settings]
    ids = {results.run_id(OmegaConf.to_container(c, resolve=True)) for c in configs}
    assert len(ids) == 1  # the same run, and the same id as before the key existed


def _cli(args, cwd):
    """A separate command: its own W&B service (not the one this test process may have started)."""
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness.run", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_killed_and_resumed_run_continues_its_own_wandb_run(tmp_path):
    data = write_glue_fixture(tmp_path / "data", n=96)  # 12 steps per epoch
    args = ["model=tiny-bert", "tracker=wandb", "trainer.progress=false", f"task.data_dir={data}",
            f"trainer.cache_dir={tmp_path / 'cache'}", "trainer.batch_size=8", "trainer.epochs=2",
            "trainer.checkpoint_every=3", "method=full_ft"]
    victim, deadline = _cli(args, tmp_path), time.time() + 300
    while not list(tmp_path.glob("outputs/*/*/*/checkpoints/step-*.pt")):
        assert victim.poll() is None and time.time() < deadline, "the run ended before writing a checkpoint"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL

    rerun = _cli(args, tmp_path)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/*/run.json")]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and len(record["resumes"]) == 1
    logs = logs_of(run_dir)
    # one log per process; `wandb sync` uploads both into the one W&B run
    assert len(logs) == 2, (sorted(str(p) for p in run_dir.glob("wandb/*")), output[-3000:])
    # each process's folder and log are named by the W&B id, the run's identity; what a log holds says so too (the
    # killed process's writer may not have flushed before the kill took it)
    assert all(log.parent.name.endswith(f"-{record['run_id']}") for log in logs)
    ids = {r.run_id for log in logs for r in of_type(wandb_records(log), "run")}
    assert ids == {record["run_id"]}
    assert record["tracking"]["wandb_dir"] == str(logs[-1].parent)
    resumed_steps = [h.step.num for h in of_type(wandb_records(logs[-1]), "history")]
    assert resumed_steps and min(resumed_steps) > record["resumes"][0]["step"]
