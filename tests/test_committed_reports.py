"""The committed reports under reports/ are what `harness-report` makes of the run records committed beside them:
rebuilding each from its records gives the same table files, byte for byte (the commands are in each COMMANDS.md)."""
from pathlib import Path

import pytest

from harness import report

REPORTS = Path(__file__).resolve().parent.parent / "reports"
COMMITTED = sorted(p.parent.name for p in REPORTS.glob("*/records") if (p.parent / "README.md").is_file())
TABLES = (".md", ".csv", ".tex", ".html")


def test_the_committed_examples_are_all_here():
    assert {"sst2_4000_seed0", "lora_rank_cpu", "param_budget_cpu", "e2e_smollm2", "glue_table2_cpu"} <= set(COMMITTED)


@pytest.mark.parametrize("folder", COMMITTED)
def test_committed_report_is_rebuilt_byte_for_byte(folder, tmp_path, monkeypatch):
    committed = REPORTS / folder
    monkeypatch.chdir(REPORTS.parent)   # runs.csv names each record by the path given, as in COMMANDS.md
    assert report.main([f"reports/{folder}/records", "--out", str(tmp_path / folder)]) == 0
    rebuilt = sorted(p.relative_to(tmp_path / folder) for p in (tmp_path / folder).rglob("*") if p.suffix in TABLES)
    assert rebuilt, "the report wrote no table"
    for name in rebuilt:
        assert (committed / name).read_bytes() == (tmp_path / folder / name).read_bytes(), f"{folder}/{name} differs"


def test_the_latency_report_is_rebuilt_from_its_benchmark(tmp_path, monkeypatch):
    """reports/latency_cpu has no training runs: its Table 1 and claims come from the committed latency benchmark
    (reports/latency_cpu/COMMANDS.md), and a report of benchmarks alone must not need any run's columns."""
    monkeypatch.chdir(REPORTS.parent)
    out = tmp_path / "latency_cpu"
    assert report.main(["reports/bench/latency_minilm_cpu_shuffled.json", "--out", str(out)]) == 0
    rebuilt = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in TABLES)
    assert {"claims.md", "README.md"} <= {str(p) for p in rebuilt}
    for name in rebuilt:
        assert (REPORTS / "latency_cpu" / name).read_bytes() == (out / name).read_bytes(), f"latency_cpu/{name} differs"
