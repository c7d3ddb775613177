"""End-to-end runs of the tiny random BERT/RoBERTa on fixture data: the run record, parameter counts, determinism,
and what bad input does."""
import json
import os
import subprocess
import sys

import pytest

from harness.errors import ConfigError
from harness.runner import run
from tests.conftest import REPO, compose_cfg

RECORD_KEYS = {"status", "error", "model", "task", "method", "seed", "config", "params", "metrics", "cost", "provenance"}


def test_full_ft_run_writes_a_complete_record(tiny_overrides, tmp_path):
    cfg = compose_cfg(*tiny_overrides, "method=full_ft", "seed=3")
    record = run(cfg, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "run.json").read_text())
    assert on_disk == json.loads(json.dumps(record, default=str))
    assert RECORD_KEYS <= set(on_disk)
    assert on_disk["status"] == "completed" and on_disk["error"] is None
    assert (on_disk["model"], on_disk["task"], on_disk["method"], on_disk["seed"]) == ("tiny-bert", "sst2", "full_ft", 3)
    params = on_disk["params"]
    assert params["trainable"] == params["total"]
    # tiny-bert head: pooler 32·32+32 and classifier 32·2+2
    assert params["trainable"] - params["trainable_no_head"] == 32 * 32 + 32 + 32 * 2 + 2
    metrics = on_disk["metrics"]
    assert metrics["headline"] == "accuracy" and len(metrics["per_epoch"]) == 2
    best = max(metrics["per_epoch"], key=lambda row: row["accuracy"])
    assert metrics["best"]["accuracy"] == best["accuracy"] and metrics["best_epoch"] == best["epoch"]
    assert 0.0 <= metrics["best"]["accuracy"] <= 1.0
    assert metrics["final"]["accuracy"] == metrics["per_epoch"][-1]["accuracy"]
    assert set(on_disk["cost"]) >= {"train_seconds", "eval_seconds", "peak_memory_bytes", "tokens_per_second",
                                    "step_seconds_median"}
    prov = on_disk["provenance"]
    assert len(prov["data"]["train"]["sha256"]) == 64 and prov["device"] == "cpu" and "torch" in prov["packages"]
    assert not list((tmp_path / "out").glob(".run.json.*"))  # atomic write leaves no temp file


def test_bitfit_trains_biases_and_head_only(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=bitfit"), tmp_path)
    # tiny-bert backbone biases: embeddings LN 32; per layer q,k,v,o 4·32 + attn LN 32 + intermediate 64 + output 32 + LN 32
    per_layer = 4 * 32 + 32 + 64 + 32 + 32
    assert record["params"]["trainable_no_head"] == 32 + 2 * per_layer
    assert record["params"]["trainable"] == record["params"]["trainable_no_head"] + 32 * 32 + 32 + 32 * 2 + 2


def test_same_seed_same_metrics_on_cpu(tiny_overrides, tmp_path):
    a = run(compose_cfg(*tiny_overrides, "method=full_ft", "seed=7"), tmp_path / "a")
    b = run(compose_cfg(*tiny_overrides, "method=full_ft", "seed=7"), tmp_path / "b")
    assert a["metrics"]["per_epoch"] == b["metrics"]["per_epoch"]
    assert a["run_id"] == b["run_id"]


def test_training_reduces_loss_and_learns_the_fixture(tiny_overrides, tmp_path):
    cfg = compose_cfg(*tiny_overrides, "method=full_ft", "trainer.epochs=15", "trainer.lr=3e-3")
    record = run(cfg, tmp_path)
    losses = [row["train_loss"] for row in record["metrics"]["per_epoch"]]
    assert losses[-1] < losses[0]
    assert record["metrics"]["best"]["accuracy"] == 1.0  # 8 distinct sentences, trivially separable


def test_epochs_zero_evaluates_the_untrained_model(tiny_overrides, tmp_path):
    """trainer.epochs=0 is the untrained baseline: one evaluation at step 0, no optimiser step; LoRA at initialisation
    is the base model (B = 0), so it scores exactly what full FT scores before training with the same seed."""
    base = run(compose_cfg(*tiny_overrides, "method=full_ft", "trainer.epochs=0", "seed=5"), tmp_path / "ft")
    lora = run(compose_cfg(*tiny_overrides, "method=lora", "trainer.epochs=0", "seed=5"), tmp_path / "lora")
    for record in (base, lora):
        assert record["status"] == "completed" and record["cost"]["steps"] == 0 and record["zero_shot"] is True
        assert [row["epoch"] for row in record["metrics"]["per_epoch"]] == [0]
        assert record["metrics"]["best_epoch"] == 0
    assert lora["metrics"]["per_epoch"][0]["accuracy"] == base["metrics"]["per_epoch"][0]["accuracy"]
    assert not (tmp_path / "ft" / "best.safetensors").exists()   # nothing trained: full FT's copy of the model not kept


@pytest.mark.parametrize("task,keys", [
    ("stsb", {"pearson", "spearman"}),
    ("mnli", {"accuracy", "dev_mismatched/accuracy"}),
    ("mrpc", {"accuracy", "f1"}),
    ("cola", {"matthews_corr", "accuracy"}),
])
def test_other_glue_tasks_run(task, keys, tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, f"task=glue/{task}", "trainer.epochs=1"), tmp_path)
    assert record["status"] == "completed"
    assert set(record["metrics"]["best"]) == keys


def test_tiny_roberta_runs(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "model=tiny-roberta", "trainer.epochs=1"), tmp_path)
    assert record["status"] == "completed" and record["model"] == "tiny-roberta"


def test_unknown_method_name_suggests_closest(tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match=r"method.name='bitfitt'.*Did you mean bitfit"):
        run(compose_cfg(*tiny_overrides, "method.name=bitfitt"), tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed" if (tmp_path / "run.json").exists() else True


@pytest.mark.parametrize("override,message", [
    ("trainer.lr=0", "trainer.lr must be > 0, got 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be > 0, got 0"),
    ("trainer.precision=fp8", "trainer.precision='fp8' is not valid"),
    ("+method.rank=8", "method.rank is not a lora setting"),
])
def test_bad_values_fail_before_loading_and_never_complete(override, message, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg(*tiny_overrides, override), tmp_path)
    assert not (tmp_path / "run.json").exists() or json.loads((tmp_path / "run.json").read_text())["status"] != "completed"


def _cli(*args, env=None):
    env = {**os.environ, "HARNESS_DATA_DIR": "/nonexistent/data", **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("override, valid", [("method=lorra", ["bitfit", "full_ft"]), ("experiment=dmeo", ["demo"])])
def test_cli_unknown_group_choice_lists_valid_ones(override, valid, tmp_path):
    proc = _cli(override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    group, choice = override.split("=")
    assert f"Could not find '{group}/{choice}'" in proc.stderr and all(v in proc.stderr for v in valid)
    assert not (tmp_path / "run.json").exists()


def test_cli_missing_data_is_one_line_exit_2_and_failed_record(tmp_path):
    proc = _cli("model=tiny-bert", "tracker=none", f"hydra.run.dir={tmp_path}", f"trainer.cache_dir={tmp_path}/c")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "/nonexistent/data/glue/SST-2/train.tsv" in lines[0] and "HARNESS_DATA_DIR" in lines[0]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


def test_wandb_offline_run_directory(tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith("tracker=")] + ["tracker=wandb", "trainer.epochs=1"]
    record = run(compose_cfg(*overrides), tmp_path)
    wandb_dir = record["tracking"]["wandb_dir"]
    assert wandb_dir and os.path.isdir(wandb_dir) and "offline-run-" in wandb_dir
    assert any(name.endswith(".wandb") for name in os.listdir(wandb_dir))


def test_wandb_run_is_grouped_tagged_and_its_config_flat(tiny_overrides, tmp_path, monkeypatch):
    """W&B grouping with no manual work: group = experiment, job_type = method, tags = model / task / method / size,
    one config column per setting ('method.r'), which harness-report --wandb reads back as the nested config."""
    import wandb

    from harness import report
    from harness.results import unflatten

    seen = {}

    class FakeRun:
        dir = str(tmp_path / "wandb" / "files")

        def __init__(self):
            self.summary = {}

        def log(self, metrics, step=None):
            pass

        def finish(self, exit_code=0):
            pass

    def init(**kwargs):
        seen.update(kwargs)
        return FakeRun()

    monkeypatch.setattr(wandb, "init", init)
    overrides = [o for o in tiny_overrides if not o.startswith("tracker=")]
    run(compose_cfg(*overrides, "tracker=wandb", "trainer.epochs=1", "experiment=demo", "method=lora",
                    "method.r=4", "trainer.max_train_samples=null"), tmp_path / "lora")
    assert (seen["group"], seen["job_type"]) == ("demo", "lora")
    assert seen["tags"] == sorted(["tiny-bert", "sst2", "lora", "r=4"])
    config = seen["config"]
    assert config["method.name"] == "lora" and config["method.r"] == 4 and config["task.name"] == "sst2"
    assert config["method.targets"] == ["q", "v"] and not any(isinstance(v, dict) for v in config.values())
    record = json.loads((tmp_path / "lora" / "run.json").read_text())
    assert unflatten(config) == json.loads(json.dumps(record["config"]))

    seen.clear()
    run(compose_cfg(*overrides, "tracker=wandb", "trainer.epochs=1", "method=lora", "++method.budget=2000"),
        tmp_path / "budget")
    assert "budget=2000" in seen["tags"] and not any(t.startswith("r=") for t in seen["tags"])
    assert report.variant_of({"name": "lora", "budget": 2000, "r": 8})[0] == "budget=2000"
