"""`harness-export`: a LoRA run's adapter as a peft folder that `AutoPeftModelForSequenceClassification` loads offline
(its base model named in the folder), and as a merged transformers model; both give the run's own dev logits."""
import gzip
import json

import pytest
import torch
from peft import AutoPeftModelForSequenceClassification, PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness import export
from harness.runner import run
from tests.conftest import compose_cfg


def tiny_lora_run(root, glue_dir, *more: str) -> dict:
    """A completed LoRA run of the tiny BERT on the fixture SST-2, in `root / "run"` (`more`: overrides)."""
    record = run(compose_cfg("model=tiny-bert", "trainer.progress=false", f"task.data_dir={glue_dir}",
                             f"trainer.cache_dir={root / 'cache'}", "trainer.batch_size=8", "method=lora",
                             "trainer.lr=1e-2", *more), root / "run")
    assert record["status"] == "completed"
    return record


@pytest.fixture(scope="module")
def lora_run(glue_dir, tmp_path_factory):
    """One epoch, so that the best epoch is the final model, whose adapter is saved."""
    root = tmp_path_factory.mktemp("lora_run")
    tiny_lora_run(root, glue_dir, "tracker=none", "trainer.epochs=1")
    return root / "run"


def run_logits(run_dir):
    """The dev logits the run itself recorded for its best epoch (predictions.jsonl.gz, 5 decimals)."""
    with gzip.open(run_dir / "predictions.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    return torch.tensor([row["scores"] for row in sorted(rows, key=lambda r: r["id"])])


def dev_logits(model, tokenizer, glue_dir):
    sentences = [line.split("\t")[0] for line in (glue_dir / "glue/SST-2/dev.tsv").read_text().splitlines()[1:]]
    with torch.no_grad():
        return model(**tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits


def test_peft_folder_loads_with_auto_peft_model_offline(lora_run, glue_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert export.main([str(lora_run), "--peft", str(tmp_path / "peft"), "--hub-ready"]) == 0
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["base_model_name_or_path"] == str(tmp_path / "peft" / "base_model")
    assert "library_name: peft" in (tmp_path / "peft" / "README.md").read_text()

    model = AutoPeftModelForSequenceClassification.from_pretrained(str(tmp_path / "peft")).eval()
    assert isinstance(model, PeftModel)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "peft"))
    expected = run_logits(lora_run)
    assert expected.abs().max() > 0.01  # a trained head, not zeros
    torch.testing.assert_close(dev_logits(model, tokenizer, glue_dir), expected, atol=1e-4, rtol=0)


def test_merged_folder_is_a_plain_transformers_model(lora_run, glue_dir, tmp_path):
    assert export.main([str(lora_run), "--merged", str(tmp_path / "merged")]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "merged")).eval()
    assert not any("lora" in name for name, _ in model.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    torch.testing.assert_close(dev_logits(model, tokenizer, glue_dir), run_logits(lora_run), atol=1e-4, rtol=0)


def test_base_model_option_is_written_as_given(lora_run, tmp_path):
    assert export.main([str(lora_run), "--peft", str(tmp_path / "p"), "--base-model", "org/base"]) == 0
    assert json.loads((tmp_path / "p" / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/base"
    assert not (tmp_path / "p" / "base_model").exists()


def test_bad_run_folders_are_one_line_exit_2(lora_run, tmp_path, capsys):
    assert export.main([str(tmp_path / "nowhere"), "--peft", str(tmp_path / "o")]) == 2
    assert "run.json not found" in capsys.readouterr().err
    record = json.loads((lora_run / "run.json").read_text())
    other = tmp_path / "bitfit_run"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({**record, "method": "bitfit"}))
    assert export.main([str(other), "--merged", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "adapter_config.json not found" in err[0] and "'bitfit'" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(lora_run)])
    assert exit_info.value.code == 2
