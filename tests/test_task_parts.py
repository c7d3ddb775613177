"""Tasks are parts: a new GLUE-format task is one yaml (no Python), a new generation dataset is one yaml plus one small
module; both found through Hydra's search path, validated into a TaskConfig, and run end to end on tiny models."""
from __future__ import annotations

import json
import textwrap

import pytest

from harness.errors import ConfigError
from harness.runner import run
from tests.conftest import compose_cfg

GLUE_LIKE = """\
# A sentiment task in GLUE's tsv layout: one yaml, no code.
name: moods
label: Moods
kind: classification
dataset: glue
version: 1
glue_dir: MOODS
splits: {train: train, eval: [dev]}
tsv: {header: true, text: [text], label: mood}
labels: [sad, glad]
metrics: [accuracy, f1]
headline: accuracy
data_dir: DATA
"""

TOY_MODULE = '''
"""A toy generation dataset: copy a word. Reader, prompt fields and scorer: all a generation dataset needs."""
from harness.tasks.pipeline import EvalItem  # noqa: F401 - the item type, for readers who group

WORDS = ["apple", "river", "stone", "cloud", "green", "table", "light", "sound", "paper", "house"]
OPTIONS = ("copies",)
METRICS = ("exact_match", "mean_length")
PROMPT_FIELDS = ("word",)


def read(task, split):
    words = WORDS * task.options["copies"] if split == "train" else WORDS[:6]
    return [{"input": w, "target": w, "word": w} for w in words], {"toy": split, "n": len(words)}


def score(task, outputs, items):
    hits = [out.strip() == item.references[0] for out, item in zip(outputs, items)]
    return {"exact_match": sum(hits) / len(hits), "mean_length": sum(len(o.split()) for o in outputs) / len(outputs)}
'''

TOY_YAML = """\
name: toy_copy
kind: generation
dataset: toy_copy_data
splits: {train: train, eval: dev}
metrics: [exact_match, mean_length]
headline: exact_match
prompt: "copy {word} =>"
copies: 3
generation: {num_beams: 1, max_new_tokens: 4, batch_size: 4, no_repeat_ngram_size: 0}
"""


def _search_path(tmp_path, name: str, text: str) -> str:
    """A config folder of the test's own with one task yaml, added to Hydra's search path."""
    conf = tmp_path / "conf" / "task"
    conf.mkdir(parents=True)
    (conf / f"{name}.yaml").write_text(text)
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def _write_moods(root):
    folder = root / "glue" / "MOODS"
    folder.mkdir(parents=True)
    rows = [("a happy sunny day", "glad"), ("a sad grey day", "sad"), ("what joy", "glad"), ("such sorrow", "sad")]
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("text\tmood\n" + "".join(f"{t}\t{m}\n" for t, m in rows * 4))
    return root


def test_a_glue_format_task_is_one_yaml(tmp_path):
    data = _write_moods(tmp_path / "data")
    search = _search_path(tmp_path, "moods", GLUE_LIKE.replace("DATA", str(data)))
    cfg = compose_cfg(search, "task=moods", "model=tiny-bert", "method=lora", "tracker=none",
                      "trainer.progress=false", "trainer.epochs=2", "trainer.batch_size=4",
                      f"trainer.cache_dir={tmp_path / 'cache'}")
    record = run(cfg, tmp_path / "out")
    assert record["status"] == "completed" and record["task"] == "moods" and record["task_kind"] == "classification"
    assert set(record["metrics"]["best"]) == {"accuracy", "f1"} and record["metrics"]["headline"] == "accuracy"
    assert record["evaluation"] == {"splits": ["dev"], "items": {"dev": 16}, "task_version": 1}
    assert record["provenance"]["data"]["train"]["path"].endswith("glue/MOODS/train.tsv")


def test_a_generation_dataset_is_one_yaml_and_one_module(tmp_path, monkeypatch):
    (tmp_path / "toy_copy_data.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    search = _search_path(tmp_path, "toy_copy", TOY_YAML)
    cfg = compose_cfg(search, "task=toy_copy", "model=tiny-gpt2", "method=lora", "tracker=none",
                      "trainer.progress=false", "trainer.epochs=1", "trainer.batch_size=5",
                      f"trainer.cache_dir={tmp_path / 'cache'}")
    record = run(cfg, tmp_path / "out")
    assert record["status"] == "completed" and record["task_kind"] == "generation"
    assert set(record["metrics"]["best"]) >= {"exact_match", "mean_length", "token_accuracy"}
    assert record["evaluation"]["items"] == {"dev": 6} and record["evaluation"]["decoding"]["num_beams"] == 1
    assert record["provenance"]["data"]["train"] == {"toy": "train", "n": 30}
    generations = (tmp_path / "out" / "generations.txt").read_text().splitlines()
    assert len(generations) == 6
    # references.txt in the official scorer's multi-reference format: one reference, then a blank line between items
    assert (tmp_path / "out" / "references.txt").read_text() == "apple\n\nriver\n\nstone\n\ncloud\n\ngreen\n\ntable\n"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("edit,message", [
    (("prompt: \"copy {word} =>\"", "prompt: \"copy {wrd} =>\""), "task.prompt uses {wrd}, which dataset toy_copy_data "
                                                                "does not give; prompt fields: word"),
    (("copies: 3", "copies: 3\ncopys: 2"), "task.copys is not a setting of task 'toy_copy'"),
    (("metrics: [exact_match, mean_length]", "metrics: [exact_match, bleu]"), "task.metrics has unknown metric 'bleu'"),
    (("dataset: toy_copy_data", "dataset: no_such_module"), "task.dataset='no_such_module': cannot import module"),
])
def test_a_task_yaml_is_checked_against_its_module(edit, message, tmp_path, monkeypatch):
    (tmp_path / "toy_copy_data.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    search = _search_path(tmp_path, "toy_copy", TOY_YAML.replace(*edit))
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        run(compose_cfg(search, "task=toy_copy", "model=tiny-gpt2", "tracker=none"), tmp_path / "out")
