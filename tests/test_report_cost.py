"""The report's training-cost table (harness/report/cost.py): medians over seeds of the records' cost fields, FLOPs per
token relative to full fine-tuning, and no table at all for records without a FLOP count."""
import json

from harness import report
from harness.report import cost
from harness.results import load_runs
from tests.test_report import make_record


def with_cost(record, tokens_per_second, flops_per_token, mfu=None, padding=0.25):
    record["cost"] = {"train_seconds": 10.0, "tokens_per_second": tokens_per_second,
                      "train_flops": flops_per_token * tokens_per_second * 10.0, "flops_per_token": flops_per_token,
                      "flops_per_second": flops_per_token * tokens_per_second, "mfu": mfu, "padding_share": padding,
                      "eval_examples_per_second": 100.0}
    return record


def write(root, records):
    for i, record in enumerate(records):
        path = root / f"{i:02d}" / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
    return root


def test_the_cost_table_gives_medians_and_the_ratio_to_full_fine_tuning(tmp_path):
    records = [with_cost(make_record("minilm", "sst2", "full_ft", s, 0.9), tps, 6.0e6)
               for s, tps in enumerate((300.0, 200.0, 250.0))]                    # median 250 tokens/s
    records += [with_cost(make_record("minilm", "sst2", "lora", s, 0.9, r=8, targets=["q", "v"]), tps, 4.2e6)
                for s, tps in enumerate((500.0, 600.0))]                           # median 550; 4.2M / 6M = 0.7
    records.append(make_record("minilm", "sst2", "bitfit", 0, 0.9))               # an older record: no FLOPs
    runs = load_runs([str(write(tmp_path / "runs", records))])
    rows = cost.cost_rows(runs).set_index("method")
    assert rows.loc["full_ft", "cost.tokens_per_second"] == 250.0 and rows.loc["full_ft", "runs"] == 3
    assert rows.loc["lora", "cost.tokens_per_second"] == 550.0
    assert rows.loc["lora", "vs_full_ft"] == 0.7 and rows.loc["full_ft", "vs_full_ft"] == 1.0
    table = cost.cost_table(runs)
    header = table["header"]
    assert "MFU" not in header and "decoded tok/s" not in header   # no record has them: no empty column
    lora = next(row for row in table["rows"] if row[2]["text"] == "lora")
    shown = dict(zip(header, (c["text"] for c in lora)))
    assert shown["tokens/s"] == "550" and shown["FLOPs/token"] == "4.2M" and shown["× full FT"] == "0.700"
    assert shown["FLOPs/s"] == "2.31G" and shown["padding"] == "25.0 %"
    bitfit = next(row for row in table["rows"] if row[2]["text"] == "bitfit")
    assert dict(zip(header, (c["text"] for c in bitfit)))["tokens/s"] == "–"

    out = tmp_path / "report"
    report.main([str(tmp_path / "runs"), "--out", str(out)])
    assert "## Training cost" in (out / "README.md").read_text() and (out / "cost.csv").is_file()


def test_records_without_a_flop_count_give_no_cost_table(tmp_path):
    runs = write(tmp_path / "runs", [make_record("minilm", "sst2", "lora", s, 0.9, r=8, targets=["q"])
                                     for s in range(2)])
    out = tmp_path / "report"
    report.main([str(runs), "--out", str(out)])
    assert "Training cost" not in (out / "README.md").read_text() and not (out / "cost.md").exists()
    assert cost.cost_table(load_runs([str(runs)])) is None


def test_si_prefixes():
    assert [cost.si(v) for v in (950, 1234, 4.2e6, 2.31e9, 7.5e12, 1.2e15)] == [
        "950", "1.23K", "4.2M", "2.31G", "7.5T", "1.2P"]
