"""The LoRA family in reports: the training-loss curve a record keeps, the learning-curve measures of the convergence
claims (hand-computed), the family's claims listed only where its methods ran, compared at equal rank, and a setting
added to LoRA read as its default in older records (so old and new plain-LoRA runs stay one row)."""
import json

import pytest

from harness import report
from harness.report import claims, curves, tables
from harness.train.state import TrainResult
from tests.test_report import make_record


def test_loss_curve_is_the_mean_loss_per_window_of_steps():
    result = TrainResult(losses=[1.0, 0.8, 0.6, 0.4, 0.2])
    assert result.loss_curve(every=2) == {"step": [2, 4, 5], "loss": [0.9, 0.5, 0.2]}
    # 2 batches per optimiser step: windows of 2 steps are 4 batches
    assert result.loss_curve(every=2, batches_per_step=2) == {"step": [2, 3], "loss": [0.7, 0.2]}
    # more than `most` windows: wider ones (5 steps in windows of 1 would be 5 points; at most 2 → windows of 3)
    assert result.loss_curve(every=1, most=2) == {"step": [3, 5], "loss": [0.8, 0.3]}
    assert TrainResult().loss_curve(every=10) == {"step": [], "loss": []}


def row(steps, losses, end=None):
    return {"metrics.loss_curve.step": steps, "metrics.loss_curve.loss": losses, "metrics.train_loss_end": end}


def test_steps_to_loss_and_early_loss_by_hand():
    a = row([10, 20, 30, 40], [0.6, 0.4, 0.3, 0.25], end=0.25)
    b = row([10, 20, 30, 40], [0.65, 0.5, 0.45, 0.4], end=0.4)
    # B ends at 0.4: A first gets there at step 20, B at step 40 → A needs 50 % fewer steps
    assert curves.steps_to_loss(a, b, {}) == (20.0, 40.0)
    # the other way round: B never reaches A's 0.25 and counts its last step, A gets there at 40
    assert curves.steps_to_loss(b, a, {}) == (40.0, 40.0)
    assert curves.early_loss(a, b, {"steps": 20}) == (pytest.approx(0.5), pytest.approx(0.575))
    assert curves.early_loss(a, b, {"steps": 5}) is None                # no window ends by step 5
    assert curves.steps_to_loss(a, {"metrics.train_loss_end": float("nan")}, {}) is None   # an older record


def write(root, method, seed, accuracy, r=8, curve=None, end=None, **method_cfg):
    record = make_record("minilm", "sst2", method, seed, accuracy, r=r, targets=["q", "v"], train=2000)
    record["config"]["method"].update(method_cfg)
    if curve:
        record["metrics"].update(loss_curve={"step": [10, 20, 30, 40], "loss": curve}, train_loss_end=end)
    folder = root / f"{method}-{r}-{seed}-{json.dumps(method_cfg, sort_keys=True)}"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(record))


def frame(root):
    records, _ = report.load_records(report.find_run_files([str(root)])[0])
    return tables.completed_runs(report.records_to_frame(records))


def family_rows(done):
    card = claims.scorecard(done)
    return card[card["claim"].str.split(":").str[0].isin({c["id"] for c in claims.load() if c.get("family")})]


def test_family_claims_are_listed_only_where_the_family_ran(tmp_path):
    for seed in range(3):
        write(tmp_path, "lora", seed, 0.85 + 0.01 * seed)
    assert family_rows(frame(tmp_path)).empty   # the paper's own reports keep their scorecards
    for seed in range(3):
        write(tmp_path, "dora", seed, 0.87 + 0.01 * seed)
    rows = family_rows(frame(tmp_path))
    verdicts = dict(zip(rows["claim"].str.split(":").str[0], rows["verdict"]))
    assert verdicts == {"rslora-high-rank": "not run", "loraplus-faster": "not run", "loraplus-accuracy": "not run",
                        "pissa-faster-early": "not run", "dora-equal-rank": "supported", "adalora-vs-lora": "not run"}


def test_family_claims_compare_at_equal_rank_and_on_learning_curves(tmp_path):
    for seed in range(3):
        for r in (1, 8):
            write(tmp_path, "lora", seed, 0.80, r=r, curve=[0.65, 0.5, 0.45, 0.4], end=0.4)
            write(tmp_path, "lora_plus", seed, 0.80 + 0.002 * seed, r=r, lr_ratio=16.0, end=0.25,
                  curve=[0.6, 0.45 if seed == 2 else 0.4, 0.4, 0.25])
    card = claims.scorecard(frame(tmp_path))
    faster = card[card["claim"].str.startswith("loraplus-faster")]
    assert sorted(zip(faster["a"], faster["b"])) == [("lora_plus r=1 {q,v}", "lora r=1 {q,v}"),
                                                      ("lora_plus r=8 {q,v}", "lora r=8 {q,v}")]   # equal ranks only
    # LoRA ends at 0.40 and gets there at step 40; LoRA+ at step 20, 20, 30 by seed: −50, −50, −25 %; mean −41.7,
    # t interval −41.7 ± 4.303·14.43/√3 = [−77.5, −5.8], below 0: lower is better, so supported
    assert list(faster["ours"]) == [pytest.approx(-125 / 3)] * 2 and set(faster["verdict"]) == {"supported"}
    assert list(faster["low"]) == [pytest.approx(-77.5, abs=0.05)] * 2
    assert faster["test"].iloc[0] == "A < B (steps_to_loss, %)"
    assert set(faster["why"]) == {"interval below the claim's bound"}   # as the A − B interval shown reads
    assert claims.verdict("superior", 10.0, 40.0, 0.0, lower=True)[0] == "contradicted"
    assert claims.verdict("superior", 10.0, 40.0, 0.0)[1] == "interval above the claim's bound"
    accuracy = card[card["claim"].str.startswith("loraplus-accuracy")]
    assert len(accuracy) == 2 and list(accuracy["ours"]) == [pytest.approx(0.2)] * 2   # +0.2 points (×100)


def test_a_setting_added_to_lora_reads_as_its_default_in_older_records(tmp_path):
    write(tmp_path, "lora", 0, 0.85)                                   # written before `scaling` existed
    write(tmp_path, "lora", 1, 0.86, scaling="standard", lr_ratio=1.0, dora=False)
    assert set(frame(tmp_path)["variant"]) == {"r=8 {q,v}"}           # one configuration, two seeds
    write(tmp_path, "lora", 2, 0.87, scaling="rslora", lr_ratio=1.0, dora=False)
    assert sorted(frame(tmp_path)["variant"]) == ["r=8 {q,v} scaling=rslora", "r=8 {q,v} scaling=standard",
                                                  "r=8 {q,v} scaling=standard"]


def test_the_family_shows_as_its_own_rows_and_rank_tables(tmp_path):
    names = {"lora": "LoRA", "rslora": "rsLoRA", "lora_plus": "LoRA+", "pissa": "PiSSA", "dora": "DoRA"}
    for i, method in enumerate(names):
        for r in (1, 64):
            write(tmp_path, method, 0, 0.80 + 0.01 * i + (0.005 if r == 64 else 0), r=r)
    records, _ = report.load_records(report.find_run_files([str(tmp_path)])[0])
    runs = report.records_to_frame(records)
    report.write_report(runs, [], [], tmp_path / "out", formats=("md",))
    table2 = (tmp_path / "out" / "table2_glue.md").read_text()
    rows = [line.split("|")[2].strip() for line in table2.splitlines() if line.startswith("| minilm")]
    assert rows == [label for label in names.values() for _ in (1, 64)]   # in each yaml's order, never pooled
    for slug in ("lora", "rslora", "lora-plus", "pissa", "dora"):   # a Table 6 layout (weight type × r) per method
        assert (tmp_path / "out" / f"table6_rank_sst2_{slug}.md").is_file()


def test_a_setting_that_differs_only_between_training_sizes_splits_no_row(tmp_path):
    """A low-data arm trained longer (10 epochs on 100 examples, 3 on 2000) is its own row by its size already: the
    epochs join no label, so LoRA at 2000 examples still pairs with BitFit (trained only at 2000), and the scorecard
    names each row's training size."""
    for method, train, epochs, scores in (("lora", 2000, 3, (0.85, 0.86, 0.87)), ("bitfit", 2000, 3, (0.80, 0.81, 0.82)),
                                          ("lora", 100, 10, (0.70, 0.71, 0.72)), ("full_ft", 100, 10, (0.60, 0.61, 0.62)),
                                          ("full_ft", 2000, 3, (0.84, 0.85, 0.86)), ("lora-64", 2000, 3, (0.9,) * 3)):
        for seed, accuracy in enumerate(scores):
            lora = method.startswith("lora")   # lora-64: a rank arm, r = 64 on Wq, Wk, Wv, Wo
            record = make_record("minilm", "sst2", "lora" if lora else method, seed, accuracy,
                                 r=(64 if method == "lora-64" else 8) if lora else None,
                                 targets=(["q", "k", "v", "o"] if method == "lora-64" else ["q", "v"]) if lora else None,
                                 train=train)
            record["config"]["trainer"]["epochs"] = epochs
            folder = tmp_path / f"{method}-{train}-{seed}"
            folder.mkdir()
            (folder / "run.json").write_text(json.dumps(record))
    done = frame(tmp_path)
    assert set(done["variant"]) == {"r=8 {q,v}", "r=64 {q,k,v,o}", ""}   # no "epochs=…" in any label
    card = claims.scorecard(done)
    # Table 2's claims compare Table 2's LoRA (r = 8 on Wq, Wv), not the rank arm's r = 64 on four weight types
    bitfit = card[card["claim"].str.startswith("lora-beats-bitfit") & (card["verdict"] != "not run")]
    assert list(bitfit["train_samples"]) == ["2000"] and list(bitfit["ours"]) == [pytest.approx(5.0)]
    assert list(bitfit["a"]) == ["lora r=8 {q,v}"]
    low = card[card["claim"].str.startswith("lora-low-data")]
    assert list(low["train_samples"]) == ["100"] and list(low["ours"]) == [pytest.approx(10.0)]
    shown = claims.display(card)
    assert "training examples" in shown.columns and set(shown["training examples"]) == {"100", "2000"}
    one_size = claims.display(card[card["train_samples"] == "2000"])
    assert "training examples" not in one_size.columns                  # one size: the column is left out
