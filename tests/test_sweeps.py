"""Sweep definitions compose and name only things that exist; the joblib and submitit launchers run a sweep."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.run import CONF_DIR
from tests.conftest import REPO

SWEEPS = sorted(p.stem for p in (Path(CONF_DIR) / "sweep").glob("*.yaml"))
CHOICES = {group: {p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml")} for group in ("model", "method")}
CHOICES["task"] = {f"glue/{p.stem}" for p in (Path(CONF_DIR) / "task" / "glue").glob("*.yaml")} | {
    p.stem for p in (Path(CONF_DIR) / "task").glob("*.yaml")}


def test_every_paper_experiment_has_a_cpu_and_a_paper_sized_sweep():
    for name in ("glue_table2", "lora_rank", "lora_targets_budget", "param_budget", "low_data", "e2e_table3",
                 "wikisql_table4"):
        assert name in SWEEPS and f"{name}_cpu" in SWEEPS


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_composes_and_names_existing_choices(name):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+sweep={name}"], return_hydra_config=True)
    # an arm of another sweep (glue_power_rank_cpu of glue_power_cpu) lands in that sweep's experiment: one report
    arm_of = cfg.experiment != name and cfg.experiment in SWEEPS and name.startswith(cfg.experiment.removesuffix("_cpu"))
    assert (cfg.experiment == name or arm_of) and cfg.skip_completed is True
    params = dict(cfg.hydra.sweeper.params)
    assert params and "seed" in params
    assert cfg.model.name in CHOICES["model"]
    for group in ("method", "task"):
        for choice in str(params.get(group, "")).split(","):
            if choice:
                assert choice in CHOICES[group], f"{name}: {group}={choice} has no config"


def _sweep(tmp_path, glue_dir, *extra):
    cmd = [sys.executable, "-m", "harness.run", "-m", "model=tiny-bert", "tracker=none", "trainer.progress=false",
           f"task.data_dir={glue_dir}", f"trainer.cache_dir={tmp_path / 'cache'}", "trainer.max_train_samples=16",
           "trainer.epochs=1", "trainer.batch_size=8", f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ})


def _records(root: Path):
    return [json.loads(p.read_text()) for p in sorted(root.rglob("run.json"))]


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]])
def test_launchers_run_a_sweep(launcher, tmp_path, glue_dir):
    proc = _sweep(tmp_path, glue_dir, "method=bitfit,lora", *launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(tmp_path / "sweep")
    assert sorted(r["method"] for r in records) == ["bitfit", "lora"]
    assert all(r["status"] == "completed" for r in records)
