"""`init_from`: a run starts from a completed run's trained parameters (trainer.epochs=0: evaluates them as they are,
e.g. on another split); start-up refuses a folder that is no completed run of the same model and method settings;
runs that leave it unset keep the identity they had before the key existed."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from safetensors.torch import load_file

from harness import results
from harness.runner import run
from harness.validate import ValidationError
from tests.conftest import compose_cfg
from tests.test_generation import overrides, write_wikisql_fixture

BASE = ("model=tiny-gpt2", "task=wikisql", "method=lora", "trainer.lr=0.05")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A completed LoRA run on the WikiSQL fixture (tiny GPT-2, 1 epoch): its folder and record."""
    tmp = tmp_path_factory.mktemp("init_from")
    data = write_wikisql_fixture(tmp / "data")
    out = tmp / "trained"
    record = run(compose_cfg(*BASE, *overrides(data, tmp)), out)
    assert record["status"] == "completed" and record["zero_shot"] is False
    return tmp, data, out, record


def test_evaluating_a_trained_run_reproduces_its_parameters_and_outputs(trained):
    tmp, data, source, first = trained
    again = run(compose_cfg(*BASE, *overrides(data, tmp, "trainer.epochs=0", f"init_from={source}")), tmp / "again")
    untrained = run(compose_cfg(*BASE, *overrides(data, tmp, "trainer.epochs=0")), tmp / "untrained")
    assert again["init_from"] == {"path": str(source), "run_id": first["run_id"]}
    assert again["zero_shot"] is False and untrained["zero_shot"] is True and again["cost"]["steps"] == 0
    lora = {name: load_file(str(folder / "adapter" / "adapter.safetensors"))
            for name, folder in (("first", source), ("again", tmp / "again"), ("untrained", tmp / "untrained"))}
    lora_b = [k for k in lora["first"] if "lora_B" in k]
    assert lora_b and all(lora["first"][k].abs().max() > 0 for k in lora_b)          # it trained
    assert all(lora["again"][k].equal(lora["first"][k]) for k in lora["first"])      # loaded exactly
    assert all(lora["untrained"][k].abs().max() == 0 for k in lora_b)                # B = 0 at initialisation
    assert (tmp / "again" / "generations.txt").read_text() == (source / "generations.txt").read_text()
    assert again["metrics"]["best"] == first["metrics"]["best"]


@pytest.mark.parametrize("change,message", [
    ("method.r=4", r"init_from=.* trained with method\.r=8, this run has method\.r=4; valid: the same method settings"),
    ("model=tiny-llama", r"init_from=.* trained model tiny-gpt2, this run model tiny-llama; valid: a run of the same"),
])
def test_init_from_another_configuration_is_refused_at_start_up(trained, change, message):
    tmp, data, source, _ = trained
    with pytest.raises(ValidationError, match=message):
        run(compose_cfg(*BASE, change, *overrides(data, tmp, "trainer.epochs=0", f"init_from={source}")), tmp / "x")


def test_init_from_a_folder_that_is_no_completed_run_is_refused(trained):
    tmp, data, _, _ = trained
    with pytest.raises(ValidationError, match=r"init_from=.*data is not a completed run's folder \(run\.json with "
                                              r"status completed and best\.safetensors\)"):
        run(compose_cfg(*BASE, *overrides(data, tmp, f"init_from={data}")), tmp / "y")


def test_unset_init_from_leaves_the_run_identity_as_before():
    config = OmegaConf.to_container(compose_cfg(*BASE), resolve=True)
    assert config["init_from"] is None
    before = {k: v for k, v in config.items() if k != "init_from"}   # a record written before the key existed
    assert results.run_id(config) == results.run_id(before)
    assert results.run_id(dict(config, init_from="runs/a")) != results.run_id(config)
    labelled = json.loads(json.dumps(config))
    labelled["model"]["label"] = "another label"                     # display only
    assert results.run_id(labelled) == results.run_id(config)
