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
    ("seed=-1", "seed must be an integer in [0, 2^32), got -1"),
    ("tracker=wandb tracker.mode=loud", "tracker.mode='loud' is not valid; valid choices: offline, online, disabled"),
    ("skip_completed=maybe", "skip_completed must be true or false, got 'maybe'"),
    # the second pass (reliability): every numeric range on the TrainerConfig fields, lengths against the model
    ("trainer.lr=nan", "trainer.lr must be a finite number > 0, got nan"),
    ("trainer.lr=inf", "trainer.lr must be a finite number > 0, got inf"),
    ("trainer.batch_size=8.5", "trainer.batch_size must be an integer > 0, got 8.5"),
    ("trainer.max_train_samples=10.5", "trainer.max_train_samples must be an integer > 0 or null, got 10.5"),
    ("trainer.max_grad_norm=-1", "trainer.max_grad_norm must be > 0 or null, got -1"),
    ("trainer.max_seq_len=1", "trainer.max_seq_len must be an integer ≥ 8, got 1"),
    ("trainer.max_seq_len=4096", "trainer.max_seq_len=4096 exceeds the 128 positions of model tiny-bert"),
    ("trainer.precision=bf16", "trainer.precision=bf16 needs a CUDA device; valid choices on CPU: auto, fp32"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size must be > 0, got 0"),
    ("trainer.subset_seed=-1", "trainer.subset_seed must be an integer in [0, 4294967296), got -1"),
    ("trainer.log_every=0", "trainer.log_every must be > 0, got 0"),
    ("trainer.progress=maybe", "trainer.progress must be true or false, got 'maybe'"),
    ("trainer.cache_dir=FILE", "trainer.cache_dir=FILE is not a writable folder"),
    ("seed=4294967296", "seed must be an integer in [0, 2^32), got 4294967296"),
    ("resume=sometimes", "resume must be true or false, got 'sometimes'"),
    ("method=lora method.targets=['q[(']", "method.targets: 'q[(' is neither a weight type"),
    ("method=lora method.alpha=0", "method (lora): alpha must be > 0, got 0"),
    ("method=lora method.init=xavier", "method (lora): init must be one of gaussian, kaiming"),
    ("method=lora method.bias=some", "method (lora): bias must be one of none, all, lora_only"),
    ("method=adapter_h method.r=0", "method (adapter_h): r must be > 0, got 0"),
    ("method=adapter_h method.nonlinearity=softmax", "method (adapter_h): nonlinearity must be one of relu"),
    ("method=prefix_embed method.l_p=200", "method.l_p + method.l_i = 200 take all 128 positions of model tiny-bert"),
    ("method=prefix_layer method.l_p=0", "method (prefix_layer): l_p + l_i must be > 0"),
    ("method=ft_top2 method.top=0", "method (ft_top2): top must be > 0, got 0"),
    ("method=adapter_d method.drop_lowest=-1", "method (adapter_d): drop_lowest must be an integer ≥ 0, got -1"),
    ("task.splits.eval=[]", "task.splits needs a `train` split and a non-empty `eval` list"),
    ("task.metrics=[]", "task.headline='accuracy' is not among task.metrics []"),
    ("~model.config", "model.config is needed with model.source=tiny"),
    ("tracker=none tracker.name=comet", "tracker.name='comet' is not a valid choice."),
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
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    places = {"EMPTY": str(empty_split_dir), "FILE": str(a_file)}
    overrides = [_place(o, places) for o in overrides.split()]
    with pytest.raises(HarnessError) as caught:
        run(compose_cfg(*tiny_overrides, *overrides), tmp_path / "out")
    assert _place(expected, places) in str(caught.value)
    assert "Traceback" not in str(caught.value)  # one line per problem (seed=-1 is two: subset_seed follows it)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "failed" and record["error"]["message"] == str(caught.value)


def _place(text: str, places: dict) -> str:
    for key, value in places.items():
        text = text.replace(key, value)
    return text


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
                      "error: seed must be an integer in [0, 2^32), got -1"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"


def test_unwritable_output_folder_is_named(tiny_overrides, tmp_path):
    blocker = tmp_path / "a_file"  # a file where a folder should be: unwritable even for root
    blocker.write_text("")
    with pytest.raises(HarnessError, match=f"output folder {blocker / 'out'} is not writable"):
        run(compose_cfg(*tiny_overrides), blocker / "out")
