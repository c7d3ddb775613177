"""A run's record keeps the identity it was composed under: its config hashes (results.run_id) to the run_id it is
saved with, for every kind of method, so a relaunched sweep, harness-analyze's grouping by configuration and
tests/test_load_runs.py's check of the committed records all find it. Settings added to a method after its first
records (its Config's ADDED) stay out of the record while at their default and not composed, as in those records."""
import pytest

from harness import results
from harness.runner import run
from tests.conftest import compose_cfg

ONE_EPOCH = ("trainer.epochs=1", "trainer.max_train_samples=16")


def short_run(tiny_overrides, folder, *extra) -> dict:
    return run(compose_cfg(*tiny_overrides, *ONE_EPOCH, *extra), folder)


@pytest.mark.parametrize("extra", [["method=lora"], ["method=lora", "+method.dora=true"], ["method=rslora"],
                                   ["method=lora_plus"], ["method=adalora"], ["method=full_ft"], ["method=adapter_h"],
                                   ["method=prefix_layer"], ["method=lora", "++method.budget=500"],
                                   ["method=prefix_embed", "++method.budget=300"]],
                         ids=lambda e: "+".join(x.split("=")[-1] for x in e))
def test_the_record_hashes_to_its_run_id(extra, tiny_overrides, tmp_path):
    record = short_run(tiny_overrides, tmp_path, *extra)
    assert record["status"] == "completed"
    assert results.run_id(record["config"]) == record["run_id"]


def test_plain_lora_records_no_setting_added_after_its_first_records(tiny_overrides, tmp_path):
    plain = short_run(tiny_overrides, tmp_path / "plain", "method=lora")["config"]["method"]
    assert not {"scaling", "lr_ratio", "dora"} & set(plain) and plain["r"] == 8 and plain["init"] == "kaiming"
    dora = short_run(tiny_overrides, tmp_path / "dora", "method=lora", "+method.dora=true")["config"]["method"]
    assert dora["dora"] is True and "lr_ratio" not in dora
    rs = short_run(tiny_overrides, tmp_path / "rs", "method=rslora")["config"]["method"]
    assert rs["scaling"] == "rslora" and rs["lr_ratio"] == 1.0 and rs["dora"] is False   # its yaml sets them


def test_a_budget_run_records_the_size_that_trained_and_keeps_its_run_id(tiny_overrides, tmp_path):
    """method.budget picks the size (here a rank other than LoRA's composed r = 8); the record says which trained,
    and its run_id is still the one it was launched under (the size hashed at its composed default)."""
    record = short_run(tiny_overrides, tmp_path, "method=lora", "++method.budget=500")
    assert record["config"]["method"]["budget"] == 500 and record["config"]["method"]["r"] != 8
    assert results.run_id(record["config"]) == record["run_id"]   # run_id: the id it was launched under
