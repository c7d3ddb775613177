"""`method.init_from`: a run starts from another run's trained parameters (the paper's MNLI → MRPC, RTE, STS-B), with
an exact key-set check, the head loaded where shapes match, the source in the record; and the two-stage sweep."""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from harness.runner import run
from harness.validate import ValidationError
from tests.conftest import REPO, compose_cfg


def best(folder):
    return load_file(str(folder / "best.safetensors"))


def test_the_second_stage_starts_from_the_mnli_adapter_of_its_seed(tiny_overrides, tmp_path):
    stage1 = tmp_path / "stage1"
    for seed in (0, 1):   # lr 1e-2: B moves away from its zero start in one epoch
        done = run(compose_cfg(*tiny_overrides, "task=glue/mnli", "method=lora", "trainer.epochs=1",
                               "trainer.lr=1e-2", f"seed={seed}"), stage1 / f"mnli-lora-{seed}")
        assert done["status"] == "completed"
    overrides = [*tiny_overrides, "task=glue/mrpc", "method=lora", "trainer.epochs=0", "seed=1",
                 f"method.init_from={stage1}/mnli-lora-*"]
    record = run(compose_cfg(*overrides), tmp_path / "mrpc", overrides=overrides)
    assert record["status"] == "completed"
    source, start = best(stage1 / "mnli-lora-1"), best(tmp_path / "mrpc")   # epochs=0: the parameters at step 0
    lora = sorted(k for k in source if ".lora_" in k)
    assert len(lora) == 8 and all(source[k].abs().sum() > 0 for k in lora if k.endswith("lora_B"))
    for name in lora + ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]:
        assert start[name].equal(source[name]), name
    other = best(stage1 / "mnli-lora-0")   # the other seed's adapter was not taken
    assert not start["bert.encoder.layer.0.attention.self.query.lora_B"].equal(
        other["bert.encoder.layer.0.attention.self.query.lora_B"])
    init = record["provenance"]["init_from"]
    assert (init["task"], init["seed"], init["method"], init["tensors"]) == ("mnli", 1, "lora", 8)
    assert init["run_dir"] == str((stage1 / "mnli-lora-1").resolve()) and len(init["sha256"]) == 64
    # the 3-way MNLI classifier does not fit the 2-way MRPC one: left as initialised, and said so
    assert init["head_loaded"] == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert init["head_skipped"] == ["classifier.bias", "classifier.weight"]
    assert (record["effective"]["init"], record["effective"]["init_from"]) == ("mnli", init["run_dir"])
    assert record["config"]["method"]["init_from"] == f"{stage1}/mnli-lora-*"


@pytest.mark.parametrize("method", ["bitfit", "adapter_h"])
def test_any_method_starts_from_a_run_of_the_same_method(method, tiny_overrides, tmp_path):
    first = run(compose_cfg(*tiny_overrides, f"method={method}", "trainer.epochs=1", "trainer.lr=1e-2"),
                tmp_path / "first")
    second = run(compose_cfg(*tiny_overrides, f"method={method}", "trainer.epochs=0", "seed=4",
                             f"method.init_from={tmp_path / 'first'}"), tmp_path / "second")
    assert first["status"] == second["status"] == "completed"
    source, start = best(tmp_path / "first"), best(tmp_path / "second")
    assert set(source) == set(start)   # same task: the whole head fits too
    assert all(start[name].equal(source[name]) for name in source)
    assert second["provenance"]["init_from"]["head_skipped"] == []


def failed_at_start(overrides, folder):
    with pytest.raises(ValidationError) as caught:
        run(compose_cfg(*overrides), folder)
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "failed" and record["metrics"] is None and record["provenance"] is None
    return str(caught.value)


def test_a_missing_or_incompatible_source_fails_at_start_up(tiny_overrides, tmp_path):
    nope = tmp_path / "nope"
    assert failed_at_start([*tiny_overrides, f"method.init_from={nope}"], tmp_path / "a") == (
        f"method.init_from={nope}: no run folder there (a folder with run.json, a folder of them, or a glob)")
    run(compose_cfg(*tiny_overrides, "method=bitfit", "trainer.epochs=1"), tmp_path / "runs" / "bitfit")
    message = failed_at_start([*tiny_overrides, "method=lora", f"method.init_from={tmp_path / 'runs'}"],
                              tmp_path / "b")
    assert message.startswith(f"method.init_from={tmp_path / 'runs'}: no completed run(s) of model tiny-bert and "
                              "method lora there")
    assert "found: bitfit (completed: tiny-bert/sst2/bitfit, seed 0)" in message
    run(compose_cfg(*tiny_overrides, "method=lora", "trainer.epochs=1"), tmp_path / "runs" / "lora-r8")
    message = failed_at_start([*tiny_overrides, "method=lora", "method.r=4",
                               f"method.init_from={tmp_path / 'runs' / 'lora-r8'}"], tmp_path / "c")
    assert "do not match this run's method parameters (shapes differ: " in message
    assert "(8, 32) there, (4, 32) here" in message   # lora_A of r=8 against r=4: caught on the weightless skeleton


@pytest.mark.slow
def test_a_two_stage_sweep_starts_the_second_stage_from_the_first(tmp_path, glue_dir):
    """The Table 2 sweeps' shape on the tiny model: an MNLI-like stage, then MRPC from its adapter, seed for seed,
    through `harness-run -m` (Hydra's override plumbing and output folders included)."""
    common = [sys.executable, "-m", "harness.run", "-m", "model=tiny-bert", "method=lora", "tracker=none",
              "trainer.progress=false", f"task.data_dir={glue_dir}", f"trainer.cache_dir={tmp_path / 'cache'}",
              "trainer.batch_size=8", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=0,1"]
    for stage in (["task=glue/mnli", "trainer.epochs=1", "trainer.lr=1e-2"],
                  ["task=glue/mrpc", "trainer.epochs=0", f"method.init_from={tmp_path / 'sweep'}/mnli-lora-*"]):
        proc = subprocess.run(common + stage, cwd=REPO, capture_output=True, text=True, timeout=600,
                              env={**os.environ})
        assert proc.returncode == 0, proc.stderr[-3000:]
    records = {(r["task"], r["seed"]): (r, p.parent) for p in (tmp_path / "sweep").glob("*/run.json")
               for r in [json.loads(p.read_text())]}
    assert sorted(records) == [("mnli", 0), ("mnli", 1), ("mrpc", 0), ("mrpc", 1)]
    for seed in (0, 1):
        (mrpc, there), (_, source) = records[("mrpc", seed)], records[("mnli", seed)]
        assert mrpc["provenance"]["init_from"]["run_dir"] == str(source.resolve())
        start, trained = best(there), best(source)
        assert all(start[k].equal(trained[k]) for k in trained if ".lora_" in k)   # equal at step 0
