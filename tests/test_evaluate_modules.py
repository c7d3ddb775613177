"""The local 🤗 evaluate modules (harness/evaluate_modules/), loaded offline by path, give exactly what the harness's own
scorers give on the same inputs; `trainer_metrics` works as the transformers Trainer's `compute_metrics`."""
import evaluate
import numpy as np
import pytest
import torch
from datasets import Dataset
from omegaconf import OmegaConf
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from harness import catalog
from harness.evaluate_modules import module_path, trainer_metrics
from harness.metrics import glue as glue_metrics
from harness.metrics.e2e import score_e2e
from harness.metrics.wikisql import score_wikisql
from harness.models.classifier import load_classifier
from harness.models.source import load_tokenizer
from harness.tasks.wikisql import load_examples, split_paths
from tests.conftest import compose_cfg
from tests.test_wikisql import PREDICTIONS, write_fixture


@pytest.mark.parametrize("task", ["sst2", "mrpc", "cola", "mnli", "stsb"])
def test_glue_module_equals_the_harness_scorer(task):
    rng = np.random.default_rng(0)
    if task == "stsb":
        labels = rng.uniform(0, 5, 50)
        preds = labels + rng.normal(0, 1, 50)
    else:
        classes = 3 if task == "mnli" else 2
        labels, preds = rng.integers(0, classes, 50), rng.integers(0, classes, 50)
    expected = glue_metrics.compute(catalog.task_meta(task)["metrics"], preds, labels)
    got = evaluate.load(module_path("glue"), task).compute(predictions=preds, references=labels)
    assert list(got) == catalog.task_meta(task)["metrics"]
    assert got == pytest.approx(expected, abs=1e-6)  # stsb's scores pass through float32


def test_glue_module_by_hand_and_a_bad_config():
    metric = evaluate.load(module_path("glue"), "mrpc")
    # 3 of 4 right; class 1: precision 2/3, recall 1 → F1 0.8
    assert metric.compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1]) == {"accuracy": 0.75, "f1": 0.8}
    with pytest.raises(KeyError, match="'e2e' is not a GLUE task; valid choices: cola, mnli"):
        evaluate.load(module_path("glue"), "e2e")
    with pytest.raises(ValueError, match="valid choices: glue, e2e, wikisql"):
        module_path("squad")


def test_e2e_module_equals_the_harness_scorer():
    outputs = ["The Eagle is a cheap pub near the river.", "Alimentum serves Chinese food in the city centre.",
               "There is a coffee shop called Aromi."]
    references = [["The Eagle is a cheap pub by the river.", "Near the river is The Eagle, a cheap pub."],
                  ["Alimentum is a Chinese restaurant in the city centre."],
                  ["Aromi is a coffee shop.", "A coffee shop named Aromi.", "Aromi: coffee shop."]]
    got = evaluate.load(module_path("e2e")).compute(predictions=outputs, references=references)
    assert got == score_e2e(outputs, references)
    assert set(got) == {"bleu", "nist", "meteor", "rouge_l", "cider"} and 0 < got["bleu"] < 1


def test_wikisql_module_equals_the_harness_scorer(tmp_path):
    data = write_fixture(tmp_path / "data")
    examples, db = load_examples(data, "dev"), split_paths(data, "dev")["db"]
    metric = evaluate.load(module_path("wikisql"))
    got = metric.compute(predictions=PREDICTIONS, references=list(range(5)), data_dir=str(data))
    assert got == score_wikisql(PREDICTIONS, examples, db)
    assert (got["logical_form_acc"], got["execution_acc"], got["parse_failures"]) == (0.4, 0.6, 1)
    # references pick the questions: the last prediction (unparseable) against question 4, the first against 0
    some = metric.compute(predictions=[PREDICTIONS[4], PREDICTIONS[0]], references=[4, 0], data_dir=str(data))
    assert some == score_wikisql([PREDICTIONS[4], PREDICTIONS[0]], [examples[4], examples[0]], db)
    assert some["logical_form_acc"] == 0.5


def test_trainer_compute_metrics_with_the_glue_module(glue_dir, tmp_path):
    model_cfg = OmegaConf.to_container(compose_cfg("model=tiny-bert").model, resolve=True)
    torch.manual_seed(0)
    model, tokenizer = load_classifier(model_cfg, 2).eval(), load_tokenizer(model_cfg)
    rows = [line.split("\t") for line in (glue_dir / "glue/SST-2/dev.tsv").read_text().splitlines()[1:]]
    data = Dataset.from_dict({"sentence": [r[0] for r in rows], "label": [int(r[1]) for r in rows]})
    data = data.map(lambda b: tokenizer(b["sentence"], truncation=True), batched=True, remove_columns=["sentence"])
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=8, report_to="none", use_cpu=True)
    trainer = Trainer(model=model, args=args, eval_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=trainer_metrics("sst2"))
    got = trainer.evaluate()
    with torch.no_grad():
        logits = model(**tokenizer([r[0] for r in rows], padding=True, return_tensors="pt")).logits
    expected = glue_metrics.compute(["accuracy"], logits.argmax(-1).numpy(), np.array(data["label"]))
    assert got["eval_accuracy"] == pytest.approx(expected["accuracy"])
