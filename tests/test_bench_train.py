"""`harness-bench train` on the tiny BERT: rounds of fresh processes in seeded random orders, medians and paired
ratios to the reference method, and the peak allocated tensor bytes (exact, the same in every process)."""
import json
import random
import statistics

import pytest
import torch

from harness.bench import main as bench_main
from harness.bench.common import BenchError, paired, summary
from harness.bench.memory import live_bytes, profiled_peak, step_peak_bytes
from harness.bench.train import aggregate, main_train, measure, targets


def test_rounds_orders_ratios_and_files(tmp_path):
    out = tmp_path / "bench.json"
    assert main_train(["--model", "tiny-bert", "--methods", "bitfit,lora", "--batch", "2", "--seq", "8",
                       "--steps", "2", "--warmup", "1", "--rounds", "2", "--seed", "3", "--threads", "1",
                       "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows, per_round, meta = {r["method"]: r for r in data["rows"]}, data["per_round"], data["meta"]
    assert data["command"].startswith("harness-bench train --model tiny-bert")
    # the orders come from random.Random(seed), one shuffle per round, and are recorded
    shuffle, expected = random.Random(3), []
    for _ in range(2):
        order = ["bitfit", "lora"]
        shuffle.shuffle(order)
        expected.append(order)
    assert meta["orders"] == expected and meta["rounds"] == 2
    assert rows["lora"]["trainable_no_head"] == 2 * 2 * 2 * 32 * 8
    for name, row in rows.items():
        steps = [r["step_seconds_median"] for r in per_round[name]]
        ref = [r["step_seconds_median"] for r in per_round["bitfit"]]
        assert row["rounds"] == 2 and row["step_seconds_median"] == statistics.median(steps)
        assert row["step_ratio"]["values"] == [a / b for a, b in zip(steps, ref)]
        # two processes, the same batch: the same peak allocated bytes to the byte
        assert len({r["peak_allocated_bytes"] for r in per_round[name]}) == 1
        assert row["peak_allocated"]["spread_pct"] == 0.0 and row["peak_rss_bytes"] > 0
    assert rows["bitfit"]["step_ratio"]["median"] == rows["bitfit"]["allocated_ratio"]["median"] == 1.0
    # LoRA keeps each adapted layer's input for A's gradient: more bytes than BitFit at the peak
    assert rows["lora"]["peak_allocated_bytes"] > rows["bitfit"]["peak_allocated_bytes"]
    table = out.with_suffix(".md").read_text()
    assert "2 rounds" in table and "| lora |" in table and "× bitfit [min–max]" in table
    assert "orders: " + "; ".join(", ".join(o) for o in expected) in table
    assert [t["method"] for t in meta["targets"]] == ["lora", "lora"]


def test_aggregate_medians_and_paired_ratios_by_hand():
    def row(method, step, alloc, rss):
        return {"method": method, "step_seconds_median": step, "peak_allocated_bytes": alloc, "peak_rss_bytes": rss,
                "peak_memory_bytes": rss, "trainable": 1, "trainable_no_head": 0}

    per_method = {"bitfit": [row("bitfit", 1.0, 100, 1000), row("bitfit", 2.0, 100, 1100), row("bitfit", 1.0, 100, 900)],
                  "lora": [row("lora", 1.1, 104, 1050), row("lora", 1.8, 104, 1200), row("lora", 1.2, 104, 950)]}
    rows = {r["method"]: r for r in aggregate(per_method, "bitfit")}
    lora = rows["lora"]
    assert lora["step_seconds_median"] == 1.2                      # median of 1.1, 1.8, 1.2
    assert lora["step_ratio"]["values"] == pytest.approx([1.1, 0.9, 1.2])
    assert (lora["step_ratio"]["median"], lora["step_ratio"]["min"], lora["step_ratio"]["max"]) == pytest.approx((1.1, 0.9, 1.2))
    assert lora["step_seconds"]["spread_pct"] == pytest.approx(100 * (1.8 - 1.1) / 1.2, abs=0.01)
    assert lora["allocated_ratio"]["median"] == pytest.approx(1.04) and lora["peak_rss_bytes"] == 1050
    found = {t["what"]: t for t in targets(list(rows.values()), "bitfit")}
    assert found["step × bitfit"]["verdict"] == "missed" and found["allocated × bitfit"]["verdict"] == "met"
    assert targets(list(rows.values()), "lora") == []


def test_summary_and_paired_by_hand():
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "spread_pct": 100.0,
                                        "values": [3.0, 1.0, 2.0]}
    assert paired([2.0, 3.0], [1.0, 2.0]) == {"median": 1.75, "min": 1.5, "max": 2.0, "values": [2.0, 1.5]}


def test_profiled_peak_counts_live_allocations_exactly():
    def fn():
        a = torch.empty(1000)                       # 4000 bytes
        b = torch.empty(500, dtype=torch.float64)   # + 4000: the peak, 8000
        del a
        c = torch.empty(10)                         # 4040 live
        return b, c

    assert profiled_peak(fn) == 8000
    layer = torch.nn.Linear(4, 3)
    assert live_bytes(layer) == (4 * 3 + 3) * 4
    assert live_bytes(layer, batch={"x": layer.weight[0]}) == (4 * 3 + 3) * 4   # a view of a counted storage: once


def test_step_peak_is_deterministic_on_a_tiny_model():
    def peak():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
        batch = {"x": torch.randn(8, 16), "y": torch.randint(0, 2, (8,))}
        optimizer = torch.optim.AdamW(model.parameters())

        def step():
            torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()   # optimiser state exists from here on
        return step_peak_bytes(step, model, optimizer, batch, torch.device("cpu"))

    first = peak()
    # at least the parameters, their gradients and AdamW's two moments (4 × (16·64 + 64 + 64·2 + 2) floats)
    assert first >= 4 * 4 * (16 * 64 + 64 + 64 * 2 + 2)
    assert peak() == first


def test_measure_counts_full_ft_in_process():
    row = measure("tiny-bert", "full_ft", 2, 8, steps=1, warmup=0, threads=1, overrides=[], device="cpu")
    assert row["trainable"] == row["total"] and row["peak_allocated_bytes"] > 4 * 4 * row["total"]


def test_bad_reference_and_unknown_subcommand_exit_2(capsys):
    with pytest.raises(BenchError, match="--reference 'full_ft'"):
        main_train(["--model", "tiny-bert", "--methods", "bitfit,lora", "--reference", "full_ft"])
    with pytest.raises(SystemExit) as exc:
        bench_main(["speed"])
    assert exc.value.code == 2
