"""Every entry point explains itself: `harness-run --help` (Hydra's app help, ours), `harness-bench --help` and its
commands' help (every option), `harness-export --help`; a near-miss group choice suggests the right one; logging is
configured once; completion knows the keys; one evaluation-size knob for every task kind."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness import bench
from harness.errors import ConfigError
from harness.tasks import generation
from harness.tasks.config import task_config
from harness.train.config import TrainerConfig
from tests.conftest import compose_cfg
from tests.test_generation import E2E_MRS, write_e2e_fixture

REPO = Path(__file__).resolve().parent.parent


def cli(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_harness_run_help_describes_groups_and_main_keys():
    proc = cli("--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert text.startswith("harness-run: train and evaluate one model × task × method")
    assert "powered by Hydra" not in text
    for line in ("task/glue: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb", "tracker: none, wandb"):
        assert line in text  # every group's choices, nested ones included
    for key in ("method.r=8", "trainer.max_eval_samples=N", "trainer.lr", "tracker.system_stats", "seed=0"):
        assert f"\n  {key}" in text  # each main key on a line of its own, described
    assert 'eval "$(harness-run -sc install=bash)"' in text


def test_near_miss_task_suggests_the_nested_choice(tmp_path):
    proc = cli("task=sst2", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Could not find 'task/sst2'")
    assert "Did you mean glue/sst2?" in lines[0] and "Valid choices: e2e, glue/cola" in lines[0]
    proc = cli("-m", "method=lora,lorra", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 2 and "Could not find 'method/lorra'" in proc.stderr and "Did you mean lora" in proc.stderr
    assert not (tmp_path / "run.json").exists()


def test_logging_is_configured_once():
    lines = [line for line in cli("--info").stdout.splitlines() if line.strip()]
    assert lines.count("Installed Hydra Plugins") == 1
    assert not any(line.startswith("[hydra.") for line in lines)


def test_shell_completion_completes_keys():
    proc = cli("-sc", "query=bash", env={"COMP_LINE": "harness-run trainer.max_ev", "COMP_POINT": "26"})
    assert proc.stdout.split() == ["trainer.max_eval_samples="]


def option_strings(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if action.help != "==SUPPRESS=="}


def test_harness_bench_help_lists_every_option_of_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in bench.COMMANDS:
        parser = bench._module(name).parser()
        assert option_strings(parser) - {"-h", "--help"} <= set(text.replace(",", " ").replace("[", " ").split())
        assert all(action.help for action in parser._actions)  # each option says what it does
        assert f"== harness-bench {name} ==" in text
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["train", "--help"])
    assert exit_info.value.code == 0 and "--rounds ROUNDS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        bench.main([])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and f"valid choices: {', '.join(bench.COMMANDS)}" in err[0]


def test_harness_export_help():
    from harness.export import parser

    text = parser().format_help()
    for option in ("RUN_DIR", "--peft OUT", "--merged OUT", "--hub-ready", "--base-model"):
        assert option in text


def e2e_task(data_dir, *more):
    cfg = compose_cfg("task=e2e", f"task.data_dir={data_dir}", *more)
    return task_config(OmegaConf.to_container(cfg.task, resolve=True))


def test_one_evaluation_size_knob_the_old_one_warned(tmp_path, caplog):
    data = write_e2e_fixture(tmp_path / "data")
    task = e2e_task(data)
    pairs, evalset, _ = generation.load_data(task, TrainerConfig(lr=1.0, max_eval_samples=2))
    assert len(evalset.items) == 2 < len(E2E_MRS)
    assert len(generation.load_data(task, TrainerConfig(lr=1.0))[1].items) == len(E2E_MRS)

    with caplog.at_level(logging.WARNING, logger="harness"):
        old = e2e_task(data, "task.max_eval_examples=2")
    assert "task.max_eval_examples is deprecated: use trainer.max_eval_samples=2" in caplog.text
    assert len(generation.load_data(old, TrainerConfig(lr=1.0))[1].items) == 2
    assert old.eval_limit(2) == 2
    with pytest.raises(ConfigError, match="trainer.max_eval_samples=3 and the deprecated task.max_eval_examples=2"):
        old.eval_limit(3)
