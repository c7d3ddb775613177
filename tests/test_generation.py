"""Generation tasks on causal LMs: loss masking and label smoothing by hand, batched decoding, and tiny random GPT-2 /
Llama runs of E2E and WikiSQL end to end on fixtures in the official formats, re-scored from the saved generations."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import harness.runner
from harness.models.causal_lm import load_causal_lm, special_ids
from harness.models.source import load_tokenizer
from harness.errors import ConfigError, DataError, HarnessError
from harness.runner import run
from harness.score import main as score_main
from harness.tasks import decoding, generation
from harness.tasks.config import GenerationConfig, task_config
from harness.tasks.pipeline import EvalItem
from harness.tracking import NullTracker
from harness.train.config import TrainerConfig
from tests.conftest import compose_cfg
from tests.test_wikisql import QUESTIONS, write_fixture

E2E_MRS = [
    ("name[The Eagle], eatType[pub], area[riverside]",
     ["The Eagle is a pub by the riverside.", "By the riverside there is a pub called The Eagle."]),
    ("name[Alimentum], food[French], priceRange[cheap]",
     ["Alimentum serves cheap French food.", "Alimentum is a cheap French restaurant."]),
    ("name[Zizzi], familyFriendly[yes]", ["Zizzi is family friendly."]),
    ("name[Aromi], eatType[coffee shop], customer rating[5 out of 5]",
     ["Aromi is a coffee shop rated 5 out of 5.", "The coffee shop Aromi has a 5 out of 5 rating.",
      "Aromi, a coffee shop, is rated 5 out of 5."]),
]
E2E_KEYS = {"loss", "token_accuracy", "bleu", "nist", "meteor", "rouge_l", "cider"}
FAST = ["tracker=none", "trainer.progress=false", "trainer.batch_size=4", "trainer.epochs=1",
        "task.generation.max_new_tokens=8", "task.generation.batch_size=3"]


def write_e2e_csv(path: Path, rows: list[tuple[str, str]], header=("mr", "ref")):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_e2e_fixture(root: Path) -> Path:
    rows = [(mr, ref) for mr, refs in E2E_MRS for ref in refs]
    for name in ("trainset.csv", "devset.csv"):
        write_e2e_csv(root / "e2e_nlg" / "csv" / name, rows)
    return root


def write_wikisql_fixture(root: Path) -> Path:
    """The colleague's fixture (tests/test_wikisql.py) as both the train and the dev split."""
    write_fixture(root, "dev")
    staging = write_fixture(root.parent / f"{root.name}-train", "train") / "wikisql"
    for path in staging.iterdir():
        shutil.move(str(path), root / "wikisql" / path.name)
    return root


@pytest.fixture
def e2e_dir(tmp_path) -> Path:
    return write_e2e_fixture(tmp_path / "data")


def overrides(data_dir: Path, tmp_path: Path, *more: str) -> list[str]:
    return [*FAST, f"task.data_dir={data_dir}", f"trainer.cache_dir={tmp_path / 'cache'}", *more]


class RecordingTracker(NullTracker):
    def __init__(self):
        self.tables, self.logged, self.summaries = {}, [], {}

    def log(self, metrics, step=None):
        self.logged.append(metrics)

    def summary(self, values):
        self.summaries.update(values)

    def table(self, key, columns, rows):
        self.tables[key] = (columns, rows)


@pytest.fixture
def tracker(monkeypatch) -> RecordingTracker:
    recording = RecordingTracker()
    monkeypatch.setattr(harness.runner, "make_tracker", lambda *a, **k: recording)
    return recording


def tiny(model: str = "tiny-gpt2"):
    mcfg = OmegaConf.to_container(compose_cfg(f"model={model}").model, resolve=True)
    return mcfg, load_tokenizer(mcfg)


# --- training targets ---------------------------------------------------------------------------------------------

def test_prompt_tokens_are_masked_and_eos_is_learned():
    _, tok = tiny()
    eos, pad = special_ids(tok)
    enc = decoding.encode_pair(tok, "name : Zizzi ||", "Zizzi is nice.", 64, eos)
    prompt = tok("name : Zizzi ||", add_special_tokens=False)["input_ids"]
    target = tok(" Zizzi is nice.", add_special_tokens=False)["input_ids"]
    assert enc["input_ids"] == prompt + target + [eos]
    assert enc["labels"] == [-100] * len(prompt) + target + [eos]
    batch = decoding.make_collate(pad)([enc, decoding.encode_pair(tok, "a ||", "b", 64, eos)])
    short = len(tok("a ||", add_special_tokens=False)["input_ids"]) + 2
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (len(enc["input_ids"]) - short)
    assert (batch["labels"][1, short:] == -100).all() and (batch["input_ids"][1, short:] == pad).all()


def test_loss_counts_target_tokens_only_with_label_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 6]])  # two prompt tokens, then the target
    # position i predicts token i+1: positions 1, 2, 3 predict 3, 4, 6
    by_hand = -torch.log_softmax(logits[0, [1, 2, 3]], -1)[[0, 1, 2], [3, 4, 6]].mean()
    assert torch.allclose(decoding.token_loss(logits, labels), by_hand)
    smoothed = F.cross_entropy(logits[0, [1, 2, 3]], torch.tensor([3, 4, 6]), label_smoothing=0.1)
    assert torch.allclose(decoding.token_loss(logits, labels, 0.1), smoothed)
    assert not torch.allclose(smoothed, by_hand)


def test_label_smoothing_from_the_task_config_reaches_the_loss(e2e_dir, tmp_path):
    cfg = compose_cfg("model=tiny-gpt2", "task=e2e", *overrides(e2e_dir, tmp_path, "task.label_smoothing=0.3"))
    task, mcfg = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("task", "model"))
    tcfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    pipeline = generation.build(task_config(task), mcfg, tcfg)
    torch.manual_seed(0)
    model = pipeline.build_model().eval()  # no dropout: two forward passes must agree
    batch = pipeline.collate([pipeline.train[i] for i in range(3)])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = pipeline.loss_fn(model, batch)
    assert torch.allclose(loss, decoding.token_loss(logits, batch["labels"], 0.3))
    assert not torch.allclose(loss, decoding.token_loss(logits, batch["labels"], 0.0))
    assert pipeline.select_on == "token_accuracy"  # decoding only after training, by default


def test_long_targets_are_cut_loudly_and_long_prompts_refused(caplog):
    _, tok = tiny()
    eos, _ = special_ids(tok)
    ds = decoding.tokenize_pairs([("a ||", "word " * 50), ("a ||", "short")], tok, 16, eos)
    assert [len(x) for x in ds["input_ids"]] == [16, len(tok("a || short", add_special_tokens=False)["input_ids"]) + 1]
    assert "1 of 2 targets cut at trainer.max_seq_len=16" in caplog.text
    with pytest.raises(DataError, match="leaves no room for its target within trainer.max_seq_len=4"):
        decoding.encode_pair(tok, "name : a very long prompt ||", "x", 4, eos)


@pytest.mark.parametrize("override,message", [
    ("task.generation.num_beams=0", "task.generation.num_beams must be an integer ≥ 1, got 0"),
    ("task.label_smoothing=1.0", r"task.label_smoothing must be in \[0, 1\), got 1.0"),
    ("task.max_eval_examples=0", "task.max_eval_examples must be a positive integer or null, got 0"),
])
def test_bad_task_values_fail_before_training(override, message, e2e_dir, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg("model=tiny-gpt2", "task=e2e", "method=lora", *overrides(e2e_dir, tmp_path, override)), tmp_path)


# --- decoding -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_name", ["tiny-gpt2", "tiny-llama"])
@pytest.mark.parametrize("beams", [1, 3])
def test_batched_left_padded_decoding_equals_one_at_a_time(model_name, beams):
    mcfg, tok = tiny(model_name)
    torch.manual_seed(0)
    model = load_causal_lm(mcfg).eval()
    prompts = ["name : the eagle ||", "name : zizzi | food : french | area : city centre ||", "a ||"]
    gcfg = GenerationConfig(num_beams=beams, max_new_tokens=6, batch_size=3, no_repeat_ngram_size=0)
    batched = decoding.generate(model, tok, prompts, gcfg, progress=False)
    single = GenerationConfig(num_beams=beams, max_new_tokens=6, batch_size=1, no_repeat_ngram_size=0)
    assert batched == decoding.generate(model, tok, prompts, single, progress=False)
    assert all("\n" not in out for out in batched)


def test_one_line_keeps_the_first_non_empty_line():
    assert decoding.one_line("\n  SELECT a   FROM table \nmore") == "SELECT a FROM table"
    assert decoding.one_line("   ") == ""


# --- runs end to end ------------------------------------------------------------------------------------------------

def rescore_e2e(out: Path, capsys) -> dict:
    capsys.readouterr()
    assert score_main(["e2e", str(out / "generations.txt"), str(out / "references.txt"), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # the official scorer's Java tools take ~10 s a call, and it is called twice
def test_a_cut_decoding_resumes_from_its_journal_with_the_same_outputs(tmp_path):
    """A decoding interrupted after two batches resumes from its journal: only the missing batches are decoded and
    the outputs equal an uninterrupted decoding's; a journal for other trained values is ignored."""
    mcfg, tok = tiny("tiny-llama")
    torch.manual_seed(0)
    model = load_causal_lm(mcfg).eval()
    prompts = ["name : the eagle ||", "name : zizzi | food : french ||", "a ||", "name : the mill | area : riverside ||"]
    gcfg = GenerationConfig(num_beams=2, max_new_tokens=5, batch_size=1, no_repeat_ngram_size=0)
    whole = decoding.generate(model, tok, prompts, gcfg, progress=False)
    journal, real = tmp_path / "generations.partial.jsonl", model.generate
    calls = []

    def cut_after(n):
        def generate(*args, **kwargs):
            if len(calls) == n:
                raise KeyboardInterrupt("the session ended")
            calls.append(1)
            return real(*args, **kwargs)
        return generate

    model.generate = cut_after(2)
    with pytest.raises(KeyboardInterrupt):
        decoding.generate(model, tok, prompts, gcfg, progress=False, journal=journal)
    assert len(journal.read_text().splitlines()) == 1 + 2            # its key, then one line per decoded item
    calls.clear()
    model.generate, counts = cut_after(99), {}
    assert decoding.generate(model, tok, prompts, gcfg, progress=False, counts=counts, journal=journal) == whole
    assert len(calls) == 2 and counts["reused"] == 2 and not journal.exists()   # removed once complete
    # a journal left by other trained values (or prompts, or settings) is not read
    calls.clear()
    model.generate = cut_after(1)
    with pytest.raises(KeyboardInterrupt):
        decoding.generate(model, tok, prompts, gcfg, progress=False, journal=journal)
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(0.5)
    calls.clear()
    model.generate, counts = cut_after(99), {}
    decoding.generate(model, tok, prompts, gcfg, progress=False, counts=counts, journal=journal)
    assert len(calls) == 4 and counts["reused"] == 0


class Cut(BaseException):
    """Stands for a kill during the final decoding."""


def test_a_run_killed_during_its_final_decoding_resumes_it_where_it_stopped(e2e_dir, tmp_path, monkeypatch):
    """Rerunning the command of a run killed while decoding (its training done) resumes the decoding from its journal:
    the batches already decoded are not decoded again, and the generations and scores are the uninterrupted run's."""
    from transformers.generation.utils import GenerationMixin

    cfg = lambda: compose_cfg("model=tiny-gpt2", "task=e2e", "method=lora", *overrides(  # noqa: E731
        e2e_dir, tmp_path, "task.generation.num_beams=2", "task.generation.batch_size=1"))
    whole = run(cfg(), tmp_path / "whole")
    real, calls = GenerationMixin.generate, []

    def cut_after(n):
        def generate(self, *args, **kwargs):
            if len(calls) == n:
                raise Cut()
            calls.append(1)
            return real(self, *args, **kwargs)
        return generate

    monkeypatch.setattr(GenerationMixin, "generate", cut_after(2))
    with pytest.raises(Cut):
        run(cfg(), tmp_path / "cut")
    assert (tmp_path / "cut" / "generations.partial.jsonl").is_file()
    calls.clear()
    monkeypatch.setattr(GenerationMixin, "generate", cut_after(99))
    resumed = run(cfg(), tmp_path / "cut")
    assert resumed["status"] == "completed" and len(calls) == len(E2E_MRS) - 2
    assert (tmp_path / "cut" / "generations.txt").read_text() == (tmp_path / "whole" / "generations.txt").read_text()
    assert resumed["metrics"]["best"] == whole["metrics"]["best"]
    assert not (tmp_path / "cut" / "generations.partial.jsonl").exists()


def test_e2e_lora_run_saves_generations_that_rescore_the_same(e2e_dir, tmp_path, tracker, capsys):
    cfg = compose_cfg("model=tiny-gpt2", "task=e2e", "method=lora", *overrides(
        e2e_dir, tmp_path, "trainer.epochs=2", "task.generation.num_beams=2"))
    out = tmp_path / "out"
    record = run(cfg, out)
    assert record["status"] == "completed"
    metrics = record["metrics"]
    assert metrics["headline"] == "bleu" and set(metrics["best"]) == E2E_KEYS
    assert 0 <= metrics["best"]["bleu"] <= 1 and 0 <= metrics["best"]["rouge_l"] <= 1 and metrics["best"]["nist"] >= 0
    # decoding ran once, after the last epoch; earlier epochs have the teacher-forced metrics only
    assert [set(row) - {"epoch", "step", "train_loss"} for row in metrics["per_epoch"]] == [
        {"loss", "token_accuracy"}, E2E_KEYS]
    assert metrics["best_epoch"] == 2 and metrics["final"]["bleu"] == metrics["best"]["bleu"]
    generations = (out / "generations.txt").read_text().splitlines()
    assert len(generations) == len(E2E_MRS) and not (out / "generations.partial.jsonl").exists()
    rescored = rescore_e2e(out, capsys)
    assert rescored == pytest.approx({k: metrics["best"][k] for k in rescored}, abs=1e-9)
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk["metrics"]["best"] == pytest.approx(metrics["best"])
    assert on_disk["provenance"]["data"]["eval_items"] == len(E2E_MRS)
    columns, rows = tracker.tables["eval/generations"]
    assert columns == ["input", "generation", "reference"] and [r[1] for r in rows] == generations
    assert tracker.summaries["best/bleu"] == metrics["best"]["bleu"] and tracker.summaries["best_epoch"] == 2


@pytest.mark.slow
def test_e2e_full_ft_llama_decoding_every_epoch_keeps_the_best(e2e_dir, tmp_path, capsys):
    cfg = compose_cfg("model=tiny-llama", "task=e2e", "method=full_ft", *overrides(
        e2e_dir, tmp_path, "trainer.epochs=3", "trainer.lr=3e-3", "task.eval_every_epoch=true",
        "task.max_eval_examples=3", "task.generation.num_beams=1"))
    out = tmp_path / "out"
    metrics = run(cfg, out)["metrics"]
    rows = metrics["per_epoch"]
    assert all(E2E_KEYS <= set(row) for row in rows)
    best = max(rows, key=lambda row: row["bleu"])
    assert metrics["best_epoch"] == best["epoch"] and metrics["best"]["bleu"] == best["bleu"]
    assert len((out / "generations.txt").read_text().splitlines()) == 3  # task.max_eval_examples MRs
    rescored = rescore_e2e(out, capsys)
    assert rescored == pytest.approx({k: metrics["best"][k] for k in rescored}, abs=1e-9)


def test_wikisql_run_counts_unparsable_queries_and_rescores(tmp_path, capsys):
    data = write_wikisql_fixture(tmp_path / "data")
    cfg = compose_cfg("model=tiny-llama", "task=wikisql", "method=lora", *overrides(data, tmp_path))
    out = tmp_path / "out"
    metrics = run(cfg, out)["metrics"]
    best = metrics["best"]
    assert metrics["headline"] == "logical_form_acc"
    assert {"logical_form_acc", "execution_acc", "parse_failures", "exec_failures"} <= set(best)
    assert 0 <= best["logical_form_acc"] <= 1 and 0 <= best["execution_acc"] <= 1
    assert best["n"] == len(QUESTIONS) and best["parse_failures"] == len(QUESTIONS)  # a random model writes no SQL
    assert len((out / "generations.txt").read_text().splitlines()) == len(QUESTIONS)
    assert (out / "references.txt").read_text().splitlines()[1] == "SELECT COUNT(School/Club Team) FROM table WHERE No. = 3"
    capsys.readouterr()
    assert score_main(["wikisql", str(out / "generations.txt"), "--data-dir", str(data), "--json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert rescored == {k: best[k] for k in rescored}


# --- bad input ------------------------------------------------------------------------------------------------------

def test_bad_e2e_data_is_a_clear_error(tmp_path):
    base = ["model=tiny-gpt2", "task=e2e", "method=lora", *FAST, f"trainer.cache_dir={tmp_path / 'cache'}"]
    data = write_e2e_fixture(tmp_path / "a")
    write_e2e_csv(data / "e2e_nlg" / "csv" / "devset.csv", [("x", "y")], header=("meaning", "text"))
    with pytest.raises(DataError, match=r"devset.csv: missing column\(s\) \['mr', 'ref'\]"):
        run(compose_cfg(*base, f"task.data_dir={data}"), tmp_path / "a-out")
    assert json.loads((tmp_path / "a-out" / "run.json").read_text())["status"] == "failed"
    data = write_e2e_fixture(tmp_path / "b")
    write_e2e_csv(data / "e2e_nlg" / "csv" / "trainset.csv", [("name[Zizzi]", "Zizzi."), ("name[Aromi]", "")])
    with pytest.raises(DataError, match=r"trainset.csv: 1 row\(s\) with an empty MR or no reference, at line\(s\) 3"):
        run(compose_cfg(*base, f"task.data_dir={data}"), tmp_path / "b-out")


def test_bad_wikisql_data_is_a_clear_error(tmp_path):
    base = ["model=tiny-gpt2", "task=wikisql", "method=lora", *FAST, f"trainer.cache_dir={tmp_path / 'cache'}"]
    data = write_wikisql_fixture(tmp_path / "a")
    tables = data / "wikisql" / "train.tables.jsonl"
    tables.write_text(tables.read_text().splitlines()[0] + "\n")  # the second table is gone
    with pytest.raises(DataError, match=r"table '2-1234-5' \(question 'Total score.*not found in .*train.tables.jsonl"):
        run(compose_cfg(*base, f"task.data_dir={data}"), tmp_path / "a-out")
    data = write_wikisql_fixture(tmp_path / "b")
    (data / "wikisql" / "dev.db").unlink()  # found at start-up, before any model loads
    with pytest.raises(HarnessError, match=r"WikiSQL dev file not found: .*dev.db"):
        run(compose_cfg(*base, f"task.data_dir={data}"), tmp_path / "b-out")


def test_cli_bad_data_is_one_line_and_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    data = write_e2e_fixture(tmp_path / "data")
    write_e2e_csv(data / "e2e_nlg" / "csv" / "trainset.csv", [("name[Zizzi]", "")])
    proc = subprocess.run([sys.executable, "-m", "harness.run", "model=tiny-gpt2", "task=e2e", "method=lora", *FAST,
                           f"task.data_dir={data}", f"hydra.run.dir={tmp_path / 'out'}",
                           f"trainer.cache_dir={tmp_path / 'cache'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "trainset.csv: 1 row(s) with an empty MR or no reference" in errors[0]


def test_after_run_decodes_the_final_model_when_the_best_generations_were_not_kept(monkeypatch, tmp_path):
    """A run resumed after its best epoch (decoding every epoch) no longer holds that epoch's generations: the final
    model is decoded and becomes the result, so generations.txt still matches metrics.best."""
    data = generation.EvalSet(items=[EvalItem("q1", {}, ["r1"]), EvalItem("q2", {}, ["r2"])], prompts=["p1", "p2"],
                              score=lambda outs: {"acc": sum(o == "right" for o in outs) / len(outs)},
                              references_text="r1\nr2\n")
    monkeypatch.setattr(decoding, "generate", lambda *args, **kwargs: ["right", "wrong"])
    decoder = generation.Decoder(data, None, GenerationConfig(), "acc", progress=False)
    record = {"metrics": {"best": {"acc": 1.0}, "best_epoch": 1, "per_epoch": [
        {"epoch": 1, "step": 5, "train_loss": 2.0, "acc": 1.0}, {"epoch": 2, "step": 10, "train_loss": 1.0, "acc": 0.9}]}}
    tracker = RecordingTracker()
    generation.after_run_fn(decoder, decode_at_end=False, samples=1)(torch.nn.Linear(1, 1), tmp_path, record, tracker)
    assert record["metrics"]["best"] == {"acc": 0.5} and record["metrics"]["best_epoch"] == 2
    assert (tmp_path / "generations.txt").read_text() == "right\nwrong\n"
    assert tracker.tables["eval/generations"][1] == [["q1", "right", "r1"]]


# --- a split without references (E2E's released test MRs) ------------------------------------------------------------

TEST_MRS = ["name[Blue Spice], eatType[pub]", "name[Cotto], food[Italian]", "name[Blue Spice], eatType[pub]",
            "name[Loch Fyne], area[riverside], familyFriendly[no]"]


def test_e2e_test_mrs_without_references_are_decoded_with_beams_never_scored(e2e_dir, tmp_path, tracker):
    """testset.csv (column MR, no references) is the test split when testset_w_refs.csv is absent: its distinct MRs are
    decoded with the paper's beam settings into generations.txt, nothing is scored, run.json says why."""
    write_e2e_csv(e2e_dir / "e2e_nlg" / "csv" / "testset.csv", [(mr,) for mr in TEST_MRS], header=("MR",))
    cfg = compose_cfg("model=tiny-gpt2", "task=e2e", "method=lora", *overrides(
        e2e_dir, tmp_path, "task.splits.eval=test", "task.generation.num_beams=3", "task.generation.length_penalty=0.9",
        "task.generation.no_repeat_ngram_size=4"))
    out = tmp_path / "out"
    record = run(cfg, out)
    assert record["status"] == "completed" and record["metrics"]["best"] == {}
    evaluation = record["evaluation"]
    assert evaluation["items"] == {"test": 3} and evaluation["references"] == {"test": 0}   # 3 distinct MRs
    assert evaluation["note"].startswith("split test has no references: its 3 items are decoded")
    assert evaluation["decoding"]["num_beams"] == 3 and evaluation["decoding"]["no_repeat_ngram_size"] == 4
    assert record["provenance"]["data"]["test"]["path"].endswith("testset.csv")
    assert len((out / "generations.txt").read_text().splitlines()) == 3 and not (out / "references.txt").exists()
    assert [row[0] for row in tracker.tables["eval/generations"][1]] == TEST_MRS[:2] + TEST_MRS[3:]
    assert "near_zero_headline" not in record["flags"]
    assert [set(row) for row in record["metrics"]["per_epoch"]] == [{"epoch", "step", "train_loss"}]  # nothing measured
    with pytest.raises(HarnessError, match=r"testset_w_refs\.csv"):   # never a training split: it has no targets
        run(compose_cfg("model=tiny-gpt2", "task=e2e", "method=lora", *overrides(
            e2e_dir, tmp_path, "task.splits.train=test", "task.splits.eval=test")), tmp_path / "train-on-test")
