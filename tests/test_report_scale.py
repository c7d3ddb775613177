"""harness-report over many runs (issue 18): what makes it fast changes no number, and what it leaves out at scale is
said. Predictions read straight from the harness's lines equal their JSON; each pair of cells is compared once per
report; a learning-curve figure shows its best 12 panels and says so; --plots writes PNG, PDF, both or none."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from harness import report, stats
from harness.report import evidence, plots, tables
from tests.test_report import write_dataset
from tests.test_report_evidence import correct_at, write_run


@pytest.mark.parametrize("rows", [
    [{"id": 0, "label": 1, "prediction": 1, "scores": [-1.4, 1.3]}, {"id": 7, "label": 0, "prediction": 1}],
    [{"id": 0, "label": 2.5, "prediction": 3.25}],                  # STS-B: floats, read as JSON reads them
    [{"id": "q-1", "label": 1, "prediction": 0}],                   # text ids
    [{"id": 0, "label": 1, "prediction": True}],                    # not an integer
    [{"prediction": 1, "id": 0, "label": 1}],                       # another key order
])
def test_predictions_read_from_the_bytes_equal_their_json(rows):
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    ids, labels, preds = evidence._parse(text)
    expected_labels, expected_preds = np.array([r["label"] for r in rows]), np.array([r["prediction"] for r in rows])
    assert labels.dtype == expected_labels.dtype and preds.dtype == expected_preds.dtype
    assert labels.tolist() == expected_labels.tolist() and preds.tolist() == expected_preds.tolist()
    as_ints = all(type(r["id"]) is int for r in rows)
    assert ids == (("int", np.array([r["id"] for r in rows]).tobytes()) if as_ints else tuple(r["id"] for r in rows))


@pytest.fixture()
def cells(tmp_path):
    """Two configurations × 3 seeds with predictions, as a runs frame of completed runs."""
    for seed in range(3):
        write_run(tmp_path, "full_ft", seed, correct_at(0.9, seed))
        write_run(tmp_path, "bitfit", seed, correct_at(0.7, seed + 10))
    files, _ = report.find_run_files([str(tmp_path)])
    return tables.completed_runs(report.records_to_frame(report.load_records(files)[0]))


def test_a_pair_is_compared_once_per_report(cells, monkeypatch):
    """The bold marks and the claim scorecard compare the same pairs: the second asks get the first's numbers (no
    second computation), and the next report computes afresh."""
    calls = []
    counted = stats.paired_differences
    monkeypatch.setattr(stats, "paired_differences", lambda *a, **k: calls.append(1) or counted(*a, **k))
    a, b = cells[cells["method"] == "full_ft"], cells[cells["method"] == "bitfit"]
    evidence.forget()
    first = evidence.compare(a, b, "accuracy")
    assert evidence.compare_many([(a, b, "accuracy"), (a, b, "accuracy")]) == [first, first] and len(calls) == 1
    assert first["evidence"] == "examples" and first["seeds"] == 3 and first["diff"] > 0.1
    evidence.forget()
    assert evidence.compare(a, b, "accuracy") == first and len(calls) == 2


def curves_frame(panels: int, lines: int = 2) -> pd.DataFrame:
    """Scores of `panels` methods (one panel each) with `lines` configurations each, two epochs; method i's curves
    end at 50 + i, so the best panels are the last ones."""
    rows = []
    for i in range(panels):
        for j in range(lines):
            per_epoch = [{"epoch": 1, "accuracy": 0.4}, {"epoch": 2, "accuracy": (50 + i + j / 10) / 100}]
            rows.append({"model": "minilm", "method": f"m{i:02d}", "variant": f"r={j + 1}", "headline": "accuracy",
                         "metrics.per_epoch": per_epoch})
    return pd.DataFrame(rows)


def test_a_learning_curve_figure_shows_its_best_12_panels_and_says_so():
    fig, _ = plots.learning_curves(curves_frame(15), "SST-2")
    shown = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert shown == [f"m{i:02d}" for i in range(3, 15)]   # the 12 best, in the tables' order
    assert "30 configurations (the best 12 of 15 panels)" in fig._suptitle.get_text()
    fig, _ = plots.learning_curves(curves_frame(7), "SST-2")   # 14 configurations, 7 panels: every one
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 7 and "best" not in fig._suptitle.get_text()


def test_plots_png_only_or_none(tmp_path):
    runs_dir = write_dataset(tmp_path)
    assert report.main([str(runs_dir), "--out", str(tmp_path / "png"), "--plots", "png"]) == 0
    written = sorted(p.suffix for p in (tmp_path / "png" / "plots").iterdir())
    assert written and set(written) == {".png"}
    page = (tmp_path / "png" / "index.html").read_text()
    assert '<img src="plots/learning_curves_sst2.png"' in page and ".pdf" not in page
    assert report.main([str(runs_dir), "--out", str(tmp_path / "none"), "--plots", "none", "--formats", "md"]) == 0
    assert not (tmp_path / "none" / "plots").exists()
    assert "- skipped: every plot: none asked for (--plots none)" in (tmp_path / "none" / "README.md").read_text()
    with pytest.raises(SystemExit) as exit_:
        report.main([str(runs_dir), "--out", str(tmp_path / "bad"), "--plots", "svg"])
    assert exit_.value.code == 2


def test_predictions_are_read_once_per_report(cells, monkeypatch):
    """Gzip predictions are decompressed once per run and report, however many comparisons a run takes part in."""
    reads, decompress = [], gzip.decompress
    monkeypatch.setattr(evidence.gzip, "decompress", lambda data: reads.append(1) or decompress(data))
    a, b = cells[cells["method"] == "full_ft"], cells[cells["method"] == "bitfit"]
    evidence.forget()
    evidence.compare_many([(a, b, "accuracy"), (b, a, "accuracy")])
    assert len(reads) == 6
