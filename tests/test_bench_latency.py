"""`harness-bench latency` on the tiny BERT: a tiny grid, a few trials; the JSON rows and the Table 1-style Markdown."""
import json

import pytest
import torch

import methods
from harness.bench.latency import main_latency, measure, parse_grid
from tests.methods_util import adapt, tiny_classifier


def test_latency_rows_and_table(tmp_path):
    out = tmp_path / "lat.json"
    argv = ["--model", "tiny-bert", "--grid", "1x24,2x24", "--trials", "3", "--warmup", "1", "--threads", "1",
            "--variants", "base,lora_merged,lora_unmerged,adapter_h,adapter_p,adapter_l,adapter_d,prefix_embed,prefix_layer",
            "--out", str(out)]
    assert main_latency(argv) == 0
    data = json.loads(out.read_text())
    rows, skipped = data["rows"], {s["variant"]: s["reason"] for s in data["meta"]["skipped"]}
    # tiny-bert has 2 layers: AdapterD's default drop_lowest=2 leaves none, so it is skipped with the reason
    assert "leaves no layer with an adapter" in skipped.pop("adapter_d")
    if "lora" not in methods.names():
        assert set(skipped) == {"lora_merged", "lora_unmerged"}
    measured = {"base", "adapter_h", "adapter_p", "adapter_l", "prefix_embed", "prefix_layer"} | (
        {"lora_merged", "lora_unmerged"} - set(skipped))
    assert {(r["variant"], r["batch"], r["seq"]) for r in rows} == {(v, b, 24) for v in measured for b in (1, 2)}
    for r in rows:
        assert {"variant", "batch", "seq", "latency_ms_median", "overhead_pct", "overhead_pct_paired", "prefix_positions",
                "params", "times_ms"} <= set(r) and len(r["times_ms"]) == 3
        assert r["latency_ms_median"] > 0 and r["trials"] == 3
        assert r["prefix_positions"] == (16 if r["variant"].startswith("prefix") else 0)   # the yamls' l_p
        if r["variant"] == "base":
            assert r["overhead_pct"] == r["overhead_pct_paired"] == 0.0 and r["params"] == 0
    assert next(r for r in rows if r["variant"] == "adapter_p")["params"] == 2 * (2 * 32 * 16 + 16 + 32)
    table = out.with_suffix(".md").read_text()
    assert "| Batch size | 1 | 2 |" in table and "| Sequence length | 24 | 24 |" in table
    assert "Adpt<sup>H</sup> (|Θ| = " in table and "16 prefix positions" in table   # the method yaml's label (Adpt^H)
    assert "harness-bench latency --model tiny-bert" in table and "Skipped: adapter_d" in table
    assert "Paired overhead" in table and "| Adpt<sup>P</sup> | " in table


def test_prefix_variants_keep_the_total_sequence_length():
    base, info = tiny_classifier()
    prefixed, _ = adapt("prefix_layer", tiny_classifier()[0], info, l_p=5, l_i=1)
    seen = []
    prefixed.bert.embeddings.register_forward_hook(lambda module, args, output: seen.append(output.shape[1]))
    times = measure({"base": base.eval(), "prefix_layer": prefixed.eval()}, 2, 20, trials=2, warmup=0, device=torch.device("cpu"))
    assert [len(t) for t in times.values()] == [2, 2]
    assert seen == [20, 20]   # 14 text tokens + 6 prefix positions


@pytest.mark.parametrize("text", ["8x", "0x128", "ax1"])
def test_bad_grid_is_a_clear_error(text):
    from harness.bench.common import BenchError

    with pytest.raises(BenchError, match="--grid"):   # harness-bench prints it as one line, exit code 2
        parse_grid(text)


def test_the_bench_command_dispatches_here(tmp_path):
    from harness.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["latency", "--model", "tiny-bert", "--grid", "1x20", "--trials", "2", "--warmup", "0",
              "--variants", "base,adapter_p", "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 0 and (tmp_path / "x.md").exists()



def test_the_paired_overhead_has_its_bootstrap_interval_and_the_merged_verdict_reads_it():
    """The paired overhead's 95 % interval over rounds brackets its point value; the GPU check's merged-LoRA verdict is
    met / missed / inconclusive from those intervals (merged LoRA is the base graph: a noisy 1.3 % is not a miss)."""
    from harness.bench.gpu_parts import merged_verdict
    from harness.bench.latency import rows_for_cell

    base = [10.0, 10.2, 9.9, 10.1, 10.0, 10.3, 9.8, 10.0]
    factors = [1.03, 0.99, 1.02, 0.98, 1.013, 1.0, 0.97, 1.02]
    models = {"base": torch.nn.Linear(2, 2), "lora_merged": torch.nn.Linear(2, 2)}
    rows = rows_for_cell(models, {"base": 0, "lora_merged": 8},
                         {"base": base, "lora_merged": [b * f for b, f in zip(base, factors)]}, 1, 8)
    base_row, row = rows
    assert base_row["overhead_pct_paired_low"] == base_row["overhead_pct_paired_high"] == 0.0
    ordered = sorted(factors)
    assert row["overhead_pct_paired"] == pytest.approx(100 * ((ordered[3] + ordered[4]) / 2 - 1), abs=0.01)  # 1.0065
    assert row["overhead_pct_paired_low"] <= -1.0 and 1.0 < row["overhead_pct_paired_high"] <= 3.0
    assert merged_verdict([row]) == "inconclusive"          # the interval straddles ±1 %
    tight = {"overhead_pct_paired": 0.2, "overhead_pct_paired_low": -0.3, "overhead_pct_paired_high": 0.6}
    slow = {"overhead_pct_paired": 4.0, "overhead_pct_paired_low": 2.5, "overhead_pct_paired_high": 5.0}
    assert merged_verdict([tight]) == "met" and merged_verdict([tight, slow]) == "missed"
    assert merged_verdict([]) == "not measured"
    assert merged_verdict([{"overhead_pct_paired": 1.3}]) == "missed"   # no interval (one round): the point value
