"""Evaluation and decoding throughput: evaluation batches sorted by length change no metric and no per-example
prediction; decoding reads the KV cache; examples, decoded tokens and FLOPs per second land in run.json's `cost`."""
import gzip
import json

import pytest
import torch

from harness.models.causal_lm import load_causal_lm
from harness.runner import run
from harness.tasks import classification, decoding
from harness.tasks.config import GenerationConfig
from tests.conftest import compose_cfg
from tests.test_generation import overrides, tiny, write_wikisql_fixture


def predictions(folder) -> list[dict]:
    with gzip.open(folder / "predictions.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize("task", ["glue/rte", "glue/stsb"])
def test_sorted_evaluation_gives_the_unsorted_metrics_and_predictions(task, tiny_overrides, tmp_path, monkeypatch):
    # batches of 4 over the fixture's 32 dev examples, whose lengths differ: sorting regroups them
    cfg = [*tiny_overrides, f"task={task}", "method=full_ft", "trainer.lr=3e-3", "trainer.eval_batch_size=4"]
    sorted_run = run(compose_cfg(*cfg), tmp_path / "sorted")
    monkeypatch.setattr(classification, "SORT_BY_LENGTH", False)
    unsorted_run = run(compose_cfg(*cfg), tmp_path / "unsorted")
    assert sorted_run["metrics"] == unsorted_run["metrics"]   # every metric and eval loss, every epoch
    assert predictions(tmp_path / "sorted") == predictions(tmp_path / "unsorted")   # ids, labels, logits, in order
    assert sorted_run["metrics"]["interval"] == unsorted_run["metrics"]["interval"]
    assert [row["id"] for row in predictions(tmp_path / "sorted")] == list(range(32))


def test_evaluation_batches_run_in_length_order_and_come_back_in_the_split_order():
    import datasets

    ds = datasets.Dataset.from_dict({"input_ids": [[1] * n for n in (5, 2, 9, 2, 7)], "labels": [0, 1, 2, 3, 4]})
    ordered, back = classification.by_length(ds)
    assert [len(ids) for ids in ordered["input_ids"]] == [2, 2, 5, 7, 9]
    assert ordered["labels"] == [1, 3, 0, 4, 2]   # ties keep the split's order
    assert torch.tensor(ordered["labels"])[back].tolist() == [0, 1, 2, 3, 4]


def test_run_json_reports_evaluation_and_training_rates(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=lora"), tmp_path)
    cost = record["cost"]
    # two evaluations (one per epoch) of the 32 dev examples
    assert cost["eval_examples_per_second"] == pytest.approx(2 * 32 / cost["eval_seconds"], rel=0.02)
    assert cost["flops_per_token"] == pytest.approx(cost["train_flops"] / (cost["tokens_per_second"]
                                                                           * cost["train_seconds"]), rel=0.02)
    assert cost["flops_per_second"] == pytest.approx(cost["train_flops"] / cost["train_seconds"], rel=0.01)
    assert 0 <= cost["padding_share"] < 1
    assert cost["mfu"] is None and cost["peak_flops"] is None and cost["device_name"] is None   # CPU: no MFU
    full = run(compose_cfg(*tiny_overrides, "method=full_ft"), tmp_path / "full")["cost"]
    # tiny-bert, 2 layers, width 32: LoRA (r=8 on q, v) between (2 + f)/3 with f → 0 and full fine-tuning's 6N
    assert 0.5 < cost["flops_per_token"] / full["flops_per_token"] < 0.8


def test_decoding_reads_the_kv_cache_and_counts_the_tokens_it_decodes():
    mcfg, tok = tiny("tiny-gpt2")
    torch.manual_seed(0)
    model = load_causal_lm(mcfg).eval()
    widths = []
    model.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                    with_kwargs=True)
    gcfg = GenerationConfig(num_beams=1, max_new_tokens=5, batch_size=2, no_repeat_ngram_size=0)
    counts = {}
    decoding.generate(model, tok, ["name : the eagle ||", "a ||"], gcfg, progress=False, counts=counts)
    # the whole prompt once, then one new position per step: the earlier ones come from the cache
    assert widths[0] > 1 and widths[1:] == [1] * (len(widths) - 1)
    assert 2 <= counts["tokens"] <= 2 * 5


def test_decoded_tokens_stop_at_the_first_eos():
    eos = 9
    rows = torch.tensor([[4, 5, 9, 9, 9], [4, 5, 6, 7, 8], [9, 9, 9, 9, 9]])
    assert decoding.new_tokens(rows, eos) == 3 + 5 + 1


def test_a_generation_run_records_decoding_and_training_rates(tmp_path):
    data = write_wikisql_fixture(tmp_path / "data")
    cfg = compose_cfg("model=tiny-llama", "task=wikisql", "method=lora", *overrides(data, tmp_path))
    cost = run(cfg, tmp_path / "out")["cost"]
    assert cost["decode_seconds"] > 0 and cost["decode_items_per_second"] > 0
    tokens_per_item = cost["decoded_tokens_per_second"] / cost["decode_items_per_second"]
    assert 1 <= tokens_per_item < 8.01   # task.generation.max_new_tokens=8 (the rates are rounded)
    assert cost["train_flops"] > 0 and cost["eval_examples_per_second"] > 0
