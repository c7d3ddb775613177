"""The WikiSQL sweep (harness/conf/sweep/wikisql_table4_cpu.yaml) end to end: a multirun of two methods on tiny GPT-2
over fixture tables in the official format (questions, tables and the SQLite database, written by the test), then
harness-report's Table 4 layout, whose numbers must be the records' own."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from harness import report
from tests.conftest import REPO
from tests.test_generation import write_wikisql_fixture

# Few evaluations, many steps: the 5 training questions 20 times over, 10 epochs of 10 steps; full FT at lr 1e-2
# learns the fixture's queries (token accuracy 1.0), BitFit does not, so the two rows differ.
SETTINGS = ["model=tiny-gpt2", "method=full_ft,bitfit", "seed=0", "tracker=none", "trainer.epochs=10",
            "trainer.lr=0.01", "trainer.batch_size=10", "trainer.warmup_ratio=0", "trainer.keep_checkpoints=0",
            "task.generation.max_new_tokens=24"]


def cells(markdown: str, label: str) -> list[str]:
    """The cells of the Markdown table row whose Method cell is `label`, bold marks dropped."""
    for line in markdown.splitlines():
        parts = [p.strip().replace("**", "") for p in line.strip().strip("|").split("|")]
        if len(parts) > 2 and parts[1] == label:
            return parts
    raise AssertionError(f"no row {label!r} in:\n{markdown}")


@pytest.mark.slow  # two training runs in a Hydra multirun, then a report (~40 s of CPU)
def test_wikisql_sweep_and_table4_layout_end_to_end(tmp_path):
    data = write_wikisql_fixture(tmp_path / "data")
    train = data / "wikisql" / "train.jsonl"
    train.write_text(train.read_text(encoding="utf-8") * 20, encoding="utf-8")
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "harness.run", "-m", "+sweep=wikisql_table4_cpu", *SETTINGS,
                           f"task.data_dir={data}", f"trainer.cache_dir={tmp_path / 'cache'}",
                           f"hydra.sweep.dir={sweep}"], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in sweep.rglob("run.json"))}
    assert sorted(records) == ["bitfit", "full_ft"] and all(r["status"] == "completed" for r in records.values())
    assert all(r["experiment"] == "wikisql_table4_cpu" and r["config"]["trainer"]["max_seq_len"] == 256
               for r in records.values())
    ft, bitfit = records["full_ft"]["metrics"], records["bitfit"]["metrics"]
    assert ft["best"]["logical_form_acc"] > bitfit["best"]["logical_form_acc"]   # the rows tell the methods apart
    assert records["bitfit"]["flags"] and not records["full_ft"]["flags"]        # BitFit learnt nothing here

    out = tmp_path / "report"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    table = (out / "table4_wikisql.md").read_text(encoding="utf-8")
    assert table.startswith("### Table 4: WikiSQL\n")
    assert "| Model | Method | Size | # Params | Logical form | Execution |" in table
    intervals = (out / "table4_wikisql_intervals.md").read_text(encoding="utf-8")
    csv = pd.read_csv(out / "table4_wikisql.csv")
    for method, label in (("full_ft", "FT"), ("bitfit", "BitFit")):
        best, interval = records[method]["metrics"]["best"], records[method]["metrics"]["interval"]
        row = cells(table, label)
        flag = "<sup>!</sup>" if records[method]["flags"] else ""   # a flagged run's cells are marked
        assert row[0] == "tiny-gpt2" and row[4:6] == [f"{100 * best['logical_form_acc']:.1f}{flag}",
                                                     f"{100 * best['execution_acc']:.1f}{flag}"]
        for metric in ("logical_form_acc", "execution_acc"):
            hit = csv[(csv["method"] == method) & (csv["metric"] == metric)]
            assert hit["median"].tolist() == [best[metric]] and hit["n"].tolist() == [1]
        # one seed: logical-form accuracy carries the run's own bootstrap interval over the questions
        lf, ex = cells(intervals, label)[3:5]
        assert interval["metric"] == "logical_form_acc"
        assert lf == (f"{100 * best['logical_form_acc']:.1f} [{100 * interval['low']:.1f}, "
                      f"{100 * interval['high']:.1f}] (n=1, examples)")
        assert ex == f"{100 * best['execution_acc']:.1f} (n=1)"
