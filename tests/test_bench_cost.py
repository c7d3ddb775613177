"""The cost-around-the-model benchmarks at tiny sizes (tiny random models, fixture or synthetic data): overhead,
startup, load, report-scale, eval. They assert what the outputs hold and their arithmetic, never timings."""
import json
import random
import statistics

import pytest
import torch

from harness import catalog
from harness.bench.evaluation import counting, main_eval
from harness.bench.load import main_load
from harness.bench.overhead import main_overhead
from harness.bench.report_scale import floor_seconds, variants, write_records
from harness.bench.startup import main_startup, stages
from harness.bench.synthetic import write_data
from harness.results import load_runs
from tests.conftest import REPO


def tiny(glue_dir, tmp_path):
    return ["model=tiny-bert", "tracker=none", "trainer.progress=false", f"task.data_dir={glue_dir}",
            f"trainer.cache_dir={tmp_path / 'cache'}", "trainer.batch_size=4", "trainer.max_eval_samples=8"]


def test_overhead_pairs_rounds_and_trains_the_same_examples(glue_dir, tmp_path):
    assert main_overhead([*tiny(glue_dir, tmp_path), "--steps", "3", "--rounds", "2", "--seed", "1",
                          "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "overhead.json").read_text())
    found, per_round = data["result"], data["per_round"]
    harness = [r["tokens_per_second"] for r in per_round["harness"]]
    bare = [r["tokens_per_second"] for r in per_round["bare"]]
    assert found["ratio"]["values"] == pytest.approx([h / b for h, b in zip(harness, bare)])
    assert found["ratio"]["median"] == pytest.approx(statistics.median(found["ratio"]["values"]))
    assert found["verdict"] == ("met" if found["ratio"]["median"] >= 0.95 else "missed")
    assert all(r["steps"] == 3 for r in per_round["harness"] + per_round["bare"])
    # the same examples in the same order: the bare loop's tokens are the harness's (its tokens/s × training seconds)
    for h, b in zip(per_round["harness"], per_round["bare"]):
        assert h["tokens_per_second"] * h["train_seconds"] == pytest.approx(b["tokens"], rel=0.02)
    shuffle, orders = random.Random(1), []
    for _ in range(2):   # the rounds' orders: one seeded shuffle each, recorded
        orders.append(["harness", "bare"])
        shuffle.shuffle(orders[-1])
    assert data["meta"]["orders"] == orders and data["meta"]["warmup"] == 1   # an untimed round of both first
    assert "harness / bare throughput" in (tmp_path / "overhead.md").read_text()


def test_startup_marks_each_stage_of_a_real_run(glue_dir, tmp_path):
    assert main_startup([*tiny(glue_dir, tmp_path), "--rounds", "1", "--warmup", "0", "--out", str(tmp_path)]) == 0
    found = json.loads((tmp_path / "startup.json").read_text())["result"]
    names = [s["stage"] for s in found["stages"]]
    assert names == ["interpreter ready", "harness imported", "config composed", "W&B imported", "runner imported",
                     "validated", "data ready", "model ready", "tracker started", "training entered",
                     "first step done"]
    at = [s["at_seconds"] for s in found["stages"]]
    assert at == sorted(at) and found["first_step_seconds"]["median"] == at[-1]
    assert found["verdict"] == ("met" if at[-1] <= 8 else "missed")


def test_stage_durations_by_hand():
    rounds = [{"a": 1.0, "b": 3.0, "c": 4.0}, {"a": 2.0, "b": 3.0, "c": 7.0}, {"a": 1.0, "b": 5.0, "c": 6.0}]
    assert stages(rounds) == [{"stage": "a", "at_seconds": 1.0, "took_seconds": 1.0},
                              {"stage": "b", "at_seconds": 3.0, "took_seconds": 2.0},
                              {"stage": "c", "at_seconds": 6.0, "took_seconds": 1.0}]


def test_load_times_each_stage_in_a_fresh_process(tmp_path):
    assert main_load(["--model", "tiny-llama", "--rounds", "1", "--out", str(tmp_path)]) == 0
    found = json.loads((tmp_path / "load_tiny-llama.json").read_text())["result"]
    one = found["rounds"][0]
    assert one["ready_seconds"] == pytest.approx(one["weights loaded"] + one["tokenizer loaded"], abs=1e-3)
    assert found["conversion"] == {"path": None, "converted_now": False, "seconds": 0.0}   # not a GGUF model
    assert one["process_seconds"] >= one["ready_seconds"]


def test_synthetic_records_have_the_shape_the_report_reads(tmp_path):
    made = write_records(40, REPO / "reports" / "glue_power_cpu" / "records", tmp_path / "records", seed=0)
    runs = load_runs([str(tmp_path / "records")])
    assert len(runs) == 40 and runs.attrs["problems"] == [] and runs["run_id"].nunique() == 40
    assert made["records"] == 40 and made["tasks"] == ["mrpc", "rte", "sst2"] and made["with_predictions"] == 1.0
    # one template per task × every method yaml but combo at its sizes × 4 training-set sizes × 3 learning rates
    assert {m for m, _ in variants()} == set(catalog.choices("method")) - {"combo"} == set(made["methods"])
    assert made["configurations"] == 3 * len(variants()) * 4 * 3 and len(variants()) > len(made["methods"])
    assert len(list((tmp_path / "records").rglob("predictions.jsonl.gz"))) == 40
    again = write_records(40, REPO / "reports" / "glue_power_cpu" / "records", tmp_path / "again", seed=0)
    first = sorted(p.read_bytes() for p in (tmp_path / "records").rglob("run.json"))
    assert again == made and first == sorted(p.read_bytes() for p in (tmp_path / "again").rglob("run.json"))

    floor = floor_seconds(tmp_path / "records")   # what any report of them pays first: its parts and what each read
    assert [p["part"] for p in floor] == ["interpreter and imports (a fresh process)", "read and parse 40 run.json",
                                          "read and parse 40 predictions.jsonl.gz"]
    assert all(p["cpu_seconds"] >= 0 and p["wall_seconds"] > 0 for p in floor)


class _Generates(torch.nn.Module):
    """generate() returns the prompt (width 2) followed by fixed new tokens: 5 6 EOS(9) PAD(0) and 7 EOS PAD PAD."""

    def generate(self, input_ids, attention_mask, generation_config=None):
        return torch.tensor([[1, 1, 5, 6, 9, 0], [1, 1, 7, 9, 0, 0]])


def test_decoded_tokens_are_counted_to_the_end_of_text():
    counter = {"tokens": 0}
    model = counting(_Generates(), eos=9, pad=0, counter=counter)
    model.generate(input_ids=torch.ones(2, 2, dtype=torch.long), attention_mask=None)
    assert counter["tokens"] == 3 + 2


def test_eval_measures_both_kinds(tmp_path):
    data = write_data(tmp_path / "data", 16, 12)
    common = f"tracker=none trainer.progress=false task.data_dir={data} trainer.cache_dir={tmp_path / 'cache'}"
    assert main_eval(["--classify", f"model=tiny-bert {common}",
                      "--generate", f"model=tiny-llama task=e2e task.dataset=harness.bench.synthetic task.metrics=[bleu] "
                                    f"{common} trainer.max_eval_samples=4 task.generation.num_beams=1 "
                                    "task.generation.max_new_tokens=6",
                      "--repeats", "2", "--warmup", "0", "--out", str(tmp_path)]) == 0
    parts = json.loads((tmp_path / "eval.json").read_text())["results"]
    cls, gen = parts["classification"], parts["generation"]
    assert cls["kind"] == "classification" and len(cls["passes"]) == 2
    assert all(p["items"] == 12 and p["items_per_second"] == pytest.approx(12 / p["seconds"]) for p in cls["passes"])
    assert gen["kind"] == "generation" and all(p["items"] == 4 for p in gen["passes"])
    # at most max_new_tokens per item, at least one
    assert all(4 <= p["tokens"] <= 4 * 6 and p["tokens_per_second"] == pytest.approx(p["tokens"] / p["seconds"])
               for p in gen["passes"])
    assert gen["decoding"]["num_beams"] == 1
