"""`harness-bench train` on the tiny BERT: one row per method, each measured in its own process, JSON + Markdown."""
import json

from harness.bench import main as bench_main
from harness.bench.train import main_train

import pytest


def test_train_bench_rows_and_files(tmp_path):
    out = tmp_path / "bench.json"
    assert main_train(["--model", "tiny-bert", "--methods", "bitfit,lora,full_ft", "--batch", "2", "--seq", "8",
                       "--steps", "3", "--warmup", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"bitfit", "lora", "full_ft"}
    assert data["command"].startswith("harness-bench train --model tiny-bert")
    assert rows["lora"]["trainable_no_head"] == 2 * 2 * 2 * 32 * 8
    assert rows["full_ft"]["trainable"] == rows["full_ft"]["total"]
    for row in rows.values():
        assert row["step_seconds_median"] > 0 and row["peak_memory_bytes"] > 0 and row["steps"] == 3
    table = out.with_suffix(".md").read_text()
    assert "| lora |" in table and "× BitFit" in table


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as exc:
        bench_main(["speed"])
    assert exc.value.code == 2
