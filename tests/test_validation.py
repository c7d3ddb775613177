"""Bad input is caught at start-up, before any data or model loads: one line per problem naming the key or path,
exit code 2, and never a `completed` record."""
import json
import os
import subprocess
import sys

import pytest

import harness.runner
from harness.errors import HarnessError
from harness.runner import run
from tests.conftest import REPO, compose_cfg

# (overrides, a substring the message must contain). EMPTY is a data folder whose SST-2 train split has only a header.
BAD_INPUTS = [
    ("trainer.lr=0", "trainer.lr must be > 0, got 0"),
    ("trainer.lr=-1e-3", "trainer.lr must be > 0, got -0.001"),
    ("trainer.batch_size=0", "trainer.batch_size must be > 0"),
    ("trainer.epochs=-1", "trainer.epochs must be an integer ≥ 0 (0: evaluate the model untrained"),
    ("trainer.warmup_ratio=1.5", "trainer.warmup_ratio must be in [0, 1)"),
    ("trainer.weight_decay=-0.1", "trainer.weight_decay must be ≥ 0"),
    ("trainer.grad_accum=0", "trainer.grad_accum must be > 0"),
    ("trainer.precision=fp8", "trainer.precision='fp8' is not valid; valid choices: auto, fp32, bf16, fp16"),
    ("trainer.device=tpu", "trainer.device='tpu' is not valid; valid choices: auto, cpu, cuda"),
    ("trainer.checkpoint_every=0", "trainer.checkpoint_every must be > 0"),
    ("trainer.keep_checkpoints=-1", "trainer.keep_checkpoints must be an integer ≥ 0"),
    ("trainer.nonfinite_retries=-2", "trainer.nonfinite_retries must be an integer ≥ 0"),
    ("+trainer.lrr=0.1", "trainer.lrr is not a trainer setting; valid keys: lr, epochs"),
    ("method=lora method.r=0", "method (lora): r must be a positive integer, got 0"),
    ("method=lora method.dropout=1.0", "method (lora): dropout must be in [0, 1)"),
    ("method=lora +method.budget=-5", "method.budget must be a positive integer"),
    ("method=lora +method.rank=8", "method.rank is not a lora setting; valid keys:"),
    ("method=bitfit method.name=bitfitt", "method.name='bitfitt' is not a valid choice. Did you mean bitfit?"),
    ("method=lora method.targets=[query_proj]", "method.targets=['query_proj'] (layers=None) match no module of model tiny-bert"),
    ("+model.num_layers=3", "model.num_layers=3 disagrees with the model's own config (2)"),
    ("method=adapter_h ~model.modules", "model tiny-bert has no `modules.attn_out`"),
    ("method=ft_top2 method.top=5", "method.top=5 exceeds the 2 layers of tiny-bert"),
    ("task.headline=f1", "task.headline='f1' is not among task.metrics ['accuracy']"),
    ("task.metrics=[accuracy,bleu]", "task.metrics has unknown metric 'bleu'; valid choices: accuracy"),
    ("task.kind=clasification", "task.kind='clasification' is not a valid choice. Did you mean classification?"),
    ("task.dataset=glu", "task.dataset='glu': cannot import module 'glu'"),
    ("+task.glue_dirr=SST-2", "task.glue_dirr is not a setting of task 'sst2' (dataset glue); valid keys:"),
    ("task.data_dir=/nonexistent", "tried /nonexistent/glue/SST-2/train.tsv"),
    ("task.splits.train=missing", "glue/SST-2/missing.tsv"),
    ("task.data_dir=EMPTY", "EMPTY/glue/SST-2/train.tsv: split 'train' has no data rows"),
    ("model.source=s3", "model.source='s3' is not a valid choice."),
    ("+model.pooling=max", "model.pooling='max' is not valid; valid choices: cls, mean"),
    ("model.tokenizer.package=no_such_pkg", "model package 'no_such_pkg' is not installed"),
    ("seed=-1", "seed must be an integer ≥ 0, got -1"),
    ("tracker=wandb tracker.mode=loud", "tracker.mode='loud' is not valid; valid choices: offline, online, disabled"),
    ("skip_completed=maybe", "skip_completed must be true or false, got 'maybe'"),
]


@pytest.fixture
def empty_split_dir(tmp_path):
    folder = tmp_path / "empty" / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\na film\t1\n")
    return tmp_path / "empty"


@pytest.mark.parametrize("overrides,expected", BAD_INPUTS, ids=[o for o, _ in BAD_INPUTS])
def test_bad_input_is_named_before_anything_loads(overrides, expected, tiny_overrides, empty_split_dir, tmp_path,
                                                 monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("data or a model was loaded before the config was validated")

    monkeypatch.setattr(harness.runner.tasks, "build", no_loading)
    overrides = [o.replace("EMPTY", str(empty_split_dir)) for o in overrides.split()]
    with pytest.raises(HarnessError) as caught:
        run(compose_cfg(*tiny_overrides, *overrides), tmp_path / "out")
    assert expected.replace("EMPTY", str(empty_split_dir)) in str(caught.value)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "failed" and record["error"]["message"] == str(caught.value)


def _cli(*args, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_prints_every_problem_on_its_own_line_and_exits_2(tiny_overrides, tmp_path):
    proc = _cli(*tiny_overrides, "trainer.lr=0", "seed=-1", "task.headline=f1", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: trainer.lr must be > 0, got 0",
                      "error: task.headline='f1' is not among task.metrics ['accuracy']",
                      "error: seed must be an integer ≥ 0, got -1"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"


def test_unwritable_output_folder_is_named(tiny_overrides, tmp_path):
    blocker = tmp_path / "a_file"  # a file where a folder should be: unwritable even for root
    blocker.write_text("")
    with pytest.raises(HarnessError, match=f"output folder {blocker / 'out'} is not writable"):
        run(compose_cfg(*tiny_overrides), blocker / "out")
