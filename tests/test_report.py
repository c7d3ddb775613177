"""harness-report end to end on hand-made run records whose medians, std and n are worked out in the comments."""
import json
import math

import pandas as pd
import pytest

from harness import report
from harness.report import sections
from harness.report import tables as rt

HEADLINE = {"sst2": "accuracy", "rte": "accuracy", "cola": "matthews_corr", "stsb": "pearson", "e2e": "bleu",
            "wikisql": "logical_form_acc"}
FAMILY = {"e2e": "e2e", "wikisql": "wikisql"}


def make_record(model, task, method, seed, best, status="completed", r=None, targets=None, params=1000,
                train=4000, flags=(), error=None):
    """A run.json as the harness writes it; `best` is a number (the headline metric) or a dict of metrics."""
    best = best if isinstance(best, dict) else {HEADLINE[task]: best}
    headline = HEADLINE[task]
    per_epoch = [{"epoch": 1, "step": 10, "train_loss": 0.5, headline: best[headline] - 0.02},
                 {"epoch": 2, "step": 20, "train_loss": 0.3, **best}]
    method_cfg = {"name": method, "budget": None, **({"r": r, "targets": targets} if r else {})}
    out = f"outputs/{model}/{task}/{method}/r{r}/{seed}"
    return {"schema_version": 1, "run_id": f"{model}-{task}-{method}-{r}-{targets}-{seed}-{train}", "status": status,
            "error": {"message": error, "traceback": "Traceback ..."} if error else None,
            "model": model, "task": task, "task_family": FAMILY.get(task, "glue"), "method": method,
            "experiment": "test", "seed": seed,
            "config": {"model": {"name": model}, "task": {"name": task}, "method": method_cfg, "seed": seed,
                       "trainer": {"max_train_samples": train, "max_eval_samples": None, "lr": 5e-4, "epochs": 2}},
            "params": {"trainable": params + 1538, "trainable_no_head": params, "total": 22_713_216},
            "metrics": {"headline": headline, "best": best, "best_epoch": 2, "per_epoch": per_epoch, "final": best},
            "flags": list(flags), "cost": {"train_seconds": 1.0}, "provenance": {"device": "cpu"},
            "output_dir": out, "started_at": "2024-01-01T00:00:00", "finished_at": f"2024-01-01T00:0{seed}:00"}


# minilm, 4000-example subsets. (method, task) → 3 seeds' best scores; medians / std in the comments.
SCORES = {
    ("full_ft", "sst2"): (0.90, 0.92, 0.91),   # median 91.0, std 1.0
    ("bitfit", "sst2"): (0.88, 0.86, 0.87),    # 87.0
    ("lora", "sst2"): (0.93, 0.94, 0.89),      # 93.0, mean 92.0, std sqrt((1+4+9)/2)=2.6
    ("full_ft", "cola"): (0.50, 0.55, 0.60),   # 55.0 ±5.0, the column's best
    ("bitfit", "cola"): (0.40, 0.45, 0.47),    # 45.0, seed 1 flagged
    ("lora", "cola"): (0.52, 0.53, 0.51),      # 52.0
    ("full_ft", "stsb"): (0.85, 0.86, 0.87),   # 86.0
    ("lora", "stsb"): (0.88, 0.87, 0.89),      # 88.0, best; bitfit has no STS-B → Avg (2/3)
}
PARAMS = {"full_ft": 22_713_216, "bitfit": 25_700, "lora": 73_728}


def write_dataset(root):
    records = []
    for (method, task), values in SCORES.items():
        for seed, value in enumerate(values):
            flags = ["chance_level"] if (method, task, seed) == ("bitfit", "cola", 1) else []
            r, targets = (8, ["v", "q"]) if method == "lora" else (None, None)
            records.append(make_record("minilm", task, method, seed, value, r=r, targets=targets,
                                       params=PARAMS[method], flags=flags))
    # The paper's own setting for one cell: RoBERTa-base, LoRA r=8 on q,v (0.29M), full data → 95.1 like the paper.
    records += [make_record("roberta-base", "sst2", "lora", s, v, r=8, targets=["q", "v"], params=294_912, train=None)
                for s, v in enumerate((0.951, 0.949, 0.953))]
    records += [make_record("gpt2-medium", "e2e", "lora", s, b, r=4, targets=["q", "v"], params=350_000, train=None)
                for s, b in enumerate(({"bleu": 0.70, "nist": 8.8, "meteor": 0.46, "rouge_l": 0.71, "cider": 2.5},
                                       {"bleu": 0.71, "nist": 8.9, "meteor": 0.47, "rouge_l": 0.72, "cider": 2.6}))]
    records.append(make_record("gpt2-medium", "wikisql", "lora", 0, {"logical_form_acc": 0.70, "execution_acc": 0.75},
                               r=4, targets=["q", "v"], params=350_000))
    records.append(make_record("minilm", "sst2", "lora", 3, 0.5, status="failed", r=8, targets=["q", "v"],
                               params=73_728, error="CUDA out of memory\nmore detail"))
    records.append(make_record("minilm", "cola", "full_ft", 4, 0.0, status="diverged", params=22_713_216,
                               error="loss is NaN at step 40"))
    for i, record in enumerate(records):
        path = root / "runs" / f"{i:03d}" / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
    (root / "runs" / "broken").mkdir()
    (root / "runs" / "broken" / "run.json").write_text("{not json")
    return root / "runs"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs_dir = write_dataset(root)
    assert report.main([str(runs_dir), "--out", str(root / "out")]) == 0
    return root, runs_dir


@pytest.fixture(scope="module")
def frames(built):
    files, _ = report.find_run_files([str(built[1])])
    records, problems = report.load_records(files)
    runs = report.records_to_frame(records)
    return runs, rt.aggregate(runs), problems


def cell_of(agg, model, method, task, metric=None):
    hit = agg[(agg.model == model) & (agg.method == method) & (agg.task == task)]
    return hit[hit.metric == (metric or HEADLINE[task])].iloc[0]


def test_frame_flattens_and_reports_corrupt_json(frames):
    runs, _, problems = frames
    assert len(runs) == 3 * 8 + 3 + 2 + 1 + 2
    assert {"config.method.r", "metrics.best.accuracy", "params.trainable_no_head"} <= set(runs.columns)
    assert [p for p, _ in problems] == [p for p, _ in problems if p.endswith("broken/run.json")] and problems
    assert "unreadable JSON" in problems[0][1]
    assert set(runs.loc[runs.method == "lora", "variant"]) == {"r=8 {q,v}", "r=4 {q,v}"}


def test_aggregate_median_mean_std_n(frames):
    _, agg, _ = frames
    lora = cell_of(agg, "minilm", "lora", "sst2")
    assert (lora["median"], lora["n"]) == (pytest.approx(0.93), 3)       # the failed seed 3 is not counted
    assert lora["mean"] == pytest.approx(0.92)
    assert lora["std"] == pytest.approx(math.sqrt((0.01**2 + 0.02**2 + 0.03**2) / 2))
    cola = cell_of(agg, "minilm", "full_ft", "cola")
    assert (cola["median"], cola["std"], cola["n"]) == (pytest.approx(0.55), pytest.approx(0.05), 3)
    assert cell_of(agg, "minilm", "bitfit", "cola")["flagged"] == 1
    wikisql = cell_of(agg, "gpt2-medium", "lora", "wikisql")
    assert wikisql["n"] == 1 and pd.isna(wikisql["std"])


def test_glue_table_markdown(built):
    md = (built[0] / "out" / "table2_glue.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert header == "| Model | Method | Size | # Params | SST-2 | CoLA | STS-B | Avg |"
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in md.splitlines() if "minilm" in line}
    lora = rows[("minilm", "LoRA", "r=8 {q,v} · 4000 train")]
    # With 3 seeds and no per-example predictions, the sign-flip test over seeds cannot reach p < 0.05 (its smallest p
    # is 2/8): no value is significantly worse than its column's best, so every value is bold; Avg bolds its best only.
    assert "| 73.7K | **93.0** ±2.6 | **52.0** ±1.0 | **88.0** ±1.0 | **77.7** |" in lora
    ft = rows[("minilm", "FT", "4000 train")]
    assert "| 22.7M | **91.0** ±1.0 | **55.0** ±5.0 | **86.0** ±1.0 | 77.3 |" in ft
    bitfit = rows[("minilm", "BitFit", "4000 train")]
    assert "| 25.7K | **87.0** ±1.0 | **45.0** ±3.6<sup>!</sup> | – | 66.0 (2/3) |" in bitfit
    assert "exact paired sign-flip permutation test over seeds" in md
    assert "**95.1** ±0.2" in md and "0.3M" in md                  # roberta-base row holds the SST-2 best
    assert "Seeds per cell: n = 3." in md


def test_latex_and_html(built):
    tex = (built[0] / "out" / "table2_glue.tex").read_text()
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert r"\textbf{55.0}{\scriptsize ±5.0}" in tex and r"\# Params" in tex
    card = (built[0] / "out" / "scorecard.tex").read_text()
    assert r"\begin{tabular}{lllllrlrrlllrrrlp{6cm}}" in card and r"roberta-base" in card and r"\bottomrule" in card
    html = (built[0] / "out" / "table2_glue.html").read_text()
    assert "<b>88.0</b><small>±1.0</small>" in html and "<th>STS-B</th>" in html
    index = (built[0] / "out" / "index.html").read_text()
    assert index.startswith("<!DOCTYPE html>") and "<caption>Runs not in the tables</caption>" in index
    assert "<caption>Paper numbers, where the setups match</caption>" in index
    assert "<caption>Unreadable records</caption>" in index


def test_csv_holds_unrounded_numbers(built):
    csv = pd.read_csv(built[0] / "out" / "table2_glue.csv")
    row = csv[(csv.model == "minilm") & (csv.method == "lora") & (csv.task == "sst2")].iloc[0]
    assert (row["median"], row["mean"], row["n"]) == (pytest.approx(0.93), pytest.approx(0.92), 3)
    assert row["std"] == pytest.approx(0.0264575, abs=1e-6)


def test_e2e_and_wikisql_tables(built):
    e2e = (built[0] / "out" / "table3_e2e.md").read_text()
    assert "| Model | Method | Size | # Params | BLEU | NIST | METEOR | ROUGE-L | CIDEr |" in e2e
    assert "| gpt2-medium | LoRA | r=4 {q,v} | 0.35M |" in e2e                 # 2 decimals: 0.3M would be 14% off
    assert "**70.5** ±0.7 | **8.85** ±0.07 | **46.5** ±0.7 | **71.5** ±0.7 | **2.55** ±0.07 |" in e2e
    wikisql = (built[0] / "out" / "table4_wikisql.md").read_text()
    assert "| **70.0** | **75.0** |" in wikisql


def test_runs_not_in_tables_are_listed(built):
    index = (built[0] / "out" / "README.md").read_text()
    section = index[index.index("## Runs not in the tables"):]
    assert "| failed | minilm | sst2 | lora |" in section and "CUDA out of memory |" in section
    assert "more detail" not in section                                   # only the first line of the message
    assert "| diverged | minilm | cola | full_ft |" in section and "loss is NaN at step 40" in section
    assert "broken/run.json | unreadable JSON" in index
    assert "## Flagged runs" in index and "chance_level" in index
    assert "| Table 2: GLUE (dev) | minilm / bitfit: no completed run for STS-B |" in index


def test_scorecard(built):
    card = pd.read_csv(built[0] / "out" / "scorecard.csv", keep_default_na=False)
    ours = card[(card.model == "roberta-base") & (card.task == "sst2") & (card.paper_model == "RoB-base")].iloc[0]
    assert (ours["ours"], ours["paper"], ours["diff"]) == (95.1, 95.1, 0.0)
    assert ours["comparable"] == "yes" and "seeds: ours 3, paper 5" in ours["why"]
    mini = card[(card.model == "minilm") & (card.method == "lora") & (card.task == "sst2")]
    assert set(mini.paper_model) == {"RoB-base", "RoB-large", "DeB-XXL"}
    assert (mini.comparable == "no").all()
    assert all("model differs: ours minilm" in w and "4000-example training subset" in w for w in mini.why)
    e2e = card[(card.task == "e2e") & (card.metric == "bleu") & (card.paper_model == "GPT-2 M")].iloc[0]
    assert (e2e["stat"], e2e["ours"], e2e["diff"], e2e["comparable"]) == ("mean", 70.5, 0.1, "yes")
    md = (built[0] / "out" / "scorecard.md").read_text()
    assert "| 95.1 | 2 | RoB-base | LoRA | 0.3M | 95.1 | ±0.2 | 0.0 | yes | seeds: ours 3, paper 5 |" in md


def test_same_inputs_give_identical_files(built, tmp_path):
    root, runs_dir = built
    assert report.main([str(runs_dir), "--out", str(tmp_path / "again")]) == 0
    first = sorted(p.relative_to(root / "out") for p in (root / "out").rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert first == second
    tables = [p for p in first if p.suffix in (".md", ".tex", ".csv", ".html")]
    assert len(tables) >= 20
    for rel in first:
        assert (root / "out" / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel


def test_plots_written(built):
    plots = built[0] / "out" / "plots"
    for stem in ("param_budget_sst2", "learning_curves_sst2", "learning_curves_cola"):
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (plots / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    index = (built[0] / "out" / "README.md").read_text()
    assert "skipped: rank sweep for SST-2: needs LoRA runs (no method.budget)" in index       # only r=8 in this data set


def test_rank_sweep_plot(tmp_path):
    for targets in (["q"], ["q", "v"]):
        for r in (1, 2, 8):
            for seed in range(2):
                path = tmp_path / "runs" / f"{''.join(targets)}{r}{seed}" / "run.json"
                path.parent.mkdir(parents=True)
                value = 0.8 + 0.01 * r + 0.005 * seed + 0.02 * len(targets)
                path.write_text(json.dumps(make_record("minilm", "sst2", "lora", seed, value, r=r, targets=targets,
                                                       params=9216 * r * len(targets))))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--formats", "md"]) == 0
    assert (tmp_path / "out" / "plots" / "rank_sweep_sst2.png").stat().st_size > 1000
    assert (tmp_path / "out" / "plots" / "rank_sweep_sst2.pdf").stat().st_size > 1000
    assert not (tmp_path / "out" / "table2_glue.tex").exists()
    rows = [line.split("|")[3].strip() for line in (tmp_path / "out" / "table2_glue.md").read_text().splitlines()
            if line.startswith("| minilm")]
    assert rows == ["r=1 {q}", "r=1 {q,v}", "r=2 {q}", "r=2 {q,v}", "r=8 {q}", "r=8 {q,v}"]


def test_glob_and_missing_inputs(built, tmp_path, capsys):
    root, runs_dir = built
    files, unmatched = report.find_run_files([str(runs_dir / "00*" / "run.json"), str(tmp_path / "nope")])
    assert len(files) == 10 and unmatched == [str(tmp_path / "nope")]
    assert report.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no run.json found" in capsys.readouterr().err


def test_repeated_config_counts_once_and_early_failure_is_listed():
    """A config re-run to completion (same run_id) keeps only its latest record; a run that failed before any metric
    (params and metrics still null, as harness-run writes it) is listed with its error."""
    old = make_record("minilm", "sst2", "lora", 0, 0.80, r=8, targets=["q", "v"])
    new = dict(make_record("minilm", "sst2", "lora", 0, 0.90, r=8, targets=["q", "v"]), finished_at="2024-02-01")
    other = make_record("minilm", "sst2", "lora", 1, 0.70, r=8, targets=["q", "v"])
    early = dict(make_record("minilm", "rte", "lora", 0, 0.0, r=8, targets=["q", "v"]), status="failed",
                 params=None, metrics=None, error={"type": "DataError", "message": "glue/RTE/train.tsv: not found"})
    runs = report.records_to_frame([dict(r, _source=f"r{i}/run.json") for i, r in enumerate((old, new, other, early))])
    cell = cell_of(rt.aggregate(runs), "minilm", "lora", "sst2")
    assert (cell["n"], cell["median"]) == (2, pytest.approx(0.80))          # median of 0.90 and 0.70
    left = sections.not_in_tables(runs)
    assert left["status"].tolist() == ["completed, repeat of a later run", "failed"]
    assert left["error"].tolist()[1] == "glue/RTE/train.tsv: not found"


def test_variant_labels_budget_and_swept_settings():
    """With method.budget the method sizes itself at run time, so the label is the budget, not the yaml's r; a
    setting swept between runs of one method (alpha here) splits rows instead of being pooled as seeds."""
    assert report.variant_of({"name": "lora", "budget": 36864, "r": 8, "targets": ["v", "q"]})[:2] == (
        "budget=36864 {q,v}", 36864.0)
    assert report.variant_of({"name": "prefix_layer", "budget": None, "l_p": 16, "l_i": 0}) == ("l_p=16", 16.0, "")
    assert report.variant_of({"name": "full_ft", "lr": 1e-4})[0] == ""
    combo = report.variant_of({"name": "combo", "budget": None, "members": [
        {"name": "lora", "r": 8, "alpha": 8, "targets": ["v", "q"]}, {"name": "prefix_embed", "l_p": 16, "l_i": 0}]})
    assert combo[0] == "r=8 {q,v} + l_p=16" and math.isnan(combo[1]) and combo[2] == ""
    records = []
    for alpha, values in ((8, (0.80, 0.82)), (16, (0.90, 0.92))):
        for seed, value in enumerate(values):
            record = make_record("minilm", "sst2", "lora", seed, value, r=8, targets=["q", "v"])
            record["config"]["method"]["alpha"] = alpha
            records.append(dict(record, run_id=f"a{alpha}s{seed}", _source=f"a{alpha}s{seed}/run.json"))
    runs = report.records_to_frame(records)
    agg = rt.aggregate(runs)
    assert dict(zip(agg["variant"], agg["median"])) == {"r=8 {q,v} alpha=8": pytest.approx(0.81),
                                                       "r=8 {q,v} alpha=16": pytest.approx(0.91)}
