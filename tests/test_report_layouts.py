"""The paper's layouts (Tables 6, 5, 1), baseline labels, the LaTeX float, the stand-alone HTML page and the faceted
learning curves, on hand-made records whose medians are worked out in the comments."""
import json

import pandas as pd
import pytest
from matplotlib.figure import Figure

from harness import report
from harness.report import layouts, plots, render, sections
from harness.report import tables as rt
from harness.report.facts import tasks_in
from tests.test_report import make_record


def lora_record(seed, value, r, targets, run_id, **method):
    """A completed LoRA SST-2 run; `method` adds or replaces config.method keys (budget, init …)."""
    record = make_record("minilm", "sst2", "lora", seed, value, r=r, targets=targets, params=4608 * r * len(targets))
    record["config"]["method"].update(method)
    return dict(record, run_id=run_id, _source=f"runs/{run_id}/run.json")


def rank_sweep_records(inits=(None,)):
    """{q}, {q,v} × r = 1, 2, 8 × seeds 0–2: score 0.70 + 0.01·r + 0.05·|targets| + 0.01·seed, so the median is
    seed 1's (e.g. {q} r=1: 77.0, {q,v} r=8: 89.0) and the std over seeds 1.0."""
    records = []
    for init in inits:
        for targets in (["q"], ["v", "q"]):
            for r in (1, 2, 8):
                for seed in range(3):
                    value = 0.70 + 0.01 * r + 0.05 * len(targets) + 0.01 * seed
                    extra = {"init": init} if init else {}
                    records.append(lora_record(seed, value, r, targets, f"{init}-{''.join(targets)}-{r}-{seed}",
                                               **extra))
    return records


def frames(records):
    runs = report.records_to_frame(records)
    return runs, rt.aggregate(runs), tasks_in(runs)


def texts(table):
    return [[c["text"] for c in row] for row in table["rows"]]


def test_table6_rank_layout():
    budget = lora_record(0, 0.5, 4, ["q"], "budget", budget=20000)       # a budget run is Table 5's, not 6's
    runs, agg, tasks = frames(rank_sweep_records() + [budget])
    (table,) = layouts.table6_rank(agg, tasks)
    assert table["name"] == "table6_rank_sst2" and "SST-2" in table["title"]
    assert table["header"] == ["Weight type", "r = 1", "r = 2", "r = 8"]
    assert texts(table) == [["{q}", "77.0", "78.0", "84.0"], ["{q,v}", "82.0", "83.0", "89.0"]]
    assert {c["std"] for row in table["rows"] for c in row[1:]} == {"1.0"}
    assert set(table["csv"]["variant_size"]) == {1.0, 2.0, 8.0} and not table["missing"]
    assert r"\label{tab:table6_rank_sst2}" in render.to_latex(table)


def test_table6_one_table_per_other_setting():
    """Runs that differ in init are two rank sweeps, named apart; one rank alone makes no table."""
    runs, agg, tasks = frames(rank_sweep_records(inits=("gaussian", "kaiming")))
    names = [t["name"] for t in layouts.table6_rank(agg, tasks)]
    assert names == ["table6_rank_sst2_init-gaussian", "table6_rank_sst2_init-kaiming"]
    single = [lora_record(s, 0.8, 8, ["q"], f"one{s}") for s in range(2)]
    assert layouts.table6_rank(frames(single)[1]) == []


def test_table5_layout_reads_the_trained_rank():
    """One budget (36,864) over {q}, {q,v}, {q,k,v,o}: the budget picks r = 8, 4, 2. The {q,v} record is an older one:
    config.method.r is the yaml default (8), method_config.r the r that trained (4)."""
    records = []
    for targets, r, value in ((["q"], 8, 0.80), (["q", "v"], 4, 0.84), (["q", "k", "v", "o"], 2, 0.83)):
        for seed in range(2):
            record = lora_record(seed, value + 0.01 * seed, r, targets, f"b-{len(targets)}-{seed}", budget=36864)
            if len(targets) == 2:
                record["config"]["method"]["r"] = 8
                record["method_config"] = {"r": 4, "targets": targets}
            records.append(record)
    runs, agg, tasks = frames(records)
    (table,) = layouts.table5_targets(agg, runs, tasks)
    assert table["name"] == "table5_targets_sst2"
    assert table["header"] == ["# Trainable parameters", "", "{q}", "{q,v}", "{q,k,v,o}"]
    assert texts(table) == [["36.9K", "rank r", "8", "4", "2"], ["", "SST-2", "80.5", "84.5", "83.5"]]
    assert layouts.table6_rank(agg, tasks) == []


LATENCY = {"meta": {"model": "minilm", "device": "cpu", "device_name": "CPU (x86_64)", "trials": 5, "warmup": 1,
                    "threads": 2, "torch": "2.13.0", "skipped": [], "command": "harness-bench latency --trials 5"},
           "rows": [{"variant": v, "batch": b, "seq": 128, "prefix_positions": 0, "params": p,
                     "latency_ms_median": m, "latency_ms_std": 0.5, "overhead_pct": o, "overhead_pct_paired": o - 0.1,
                     "times_ms": [m] * 5}
                    for b, base in ((1, 20.0), (8, 100.0))
                    for v, p, m, o in (("base", 0, base, 0.0), ("lora_merged", 73728, base * 1.01, 1.0),
                                       ("adapter_h", 87648, base * 1.05, 5.0))]}


def test_table1_latency_layout(tmp_path):
    table = layouts.table1_latency(LATENCY)
    assert table["name"] == "table1_latency_minilm_cpu"
    assert table["header"] == ["Variant", "|Θ|", "1 × 128", "8 × 128"]
    md = render.to_markdown(table)
    assert "| Base (FT) | 0 | 20.00 ±0.50 | 100.00 ±0.50 |" in md
    assert "| LoRA merged | 73,728 | 20.20 ±0.50 (+1.0%) | 101.00 ±0.50 (+1.0%) |" in md
    assert "| Adpt<sup>H</sup> | 87,648 | 21.00 ±0.50 (+5.0%) |" in md
    assert "times_ms" not in table["csv"] and len(table["csv"]) == 6
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "latency_minilm_cpu.json").write_text(json.dumps(LATENCY))
    (tmp_path / "bench" / "latency_notes.json").write_text(json.dumps({"meta": {}, "rows": [{"variant": "x"}]}))
    (tmp_path / "run.json").write_text(json.dumps(make_record("minilm", "sst2", "lora", 0, 0.9)))
    found = layouts.latency_files([str(tmp_path / "bench"), str(tmp_path / "run.json")])
    assert found == [tmp_path / "bench" / "latency_minilm_cpu.json"]
    assert [t["name"] for t in layouts.latency_tables(found)] == ["table1_latency_minilm_cpu"]


def test_zero_shot_label():
    """The model's label from its yaml; the record's own `zero_shot` mark decides, older records by epochs = 0."""
    row = {"model": "smollm2", "method": "lora", "config.trainer.epochs": 0, "config.trainer.max_steps": None}
    assert layouts.baseline_label(row) == "SmolLM2 (zero-shot)"
    assert layouts.baseline_label(dict(row, model="my-model")) == "my-model (zero-shot)"   # no yaml: its name
    assert layouts.baseline_label(pd.Series(dict(row, **{"config.trainer.max_steps": float("nan")}))) is not None
    assert layouts.baseline_label(dict(row, **{"config.trainer.epochs": 2})) is None
    assert layouts.baseline_label(dict(row, **{"config.trainer.max_steps": 50})) is None
    assert layouts.baseline_label(dict(row, zero_shot=False)) is None            # epochs=0 on weights from init_from
    assert layouts.baseline_label(dict(row, zero_shot=float("nan"))) is not None  # a frame's gap: the older rule


def test_latex_is_a_float_with_caption_label_and_notes():
    table = rt.frame_table(pd.DataFrame({"method": ["lora_peft"], "score": ["≥ 90"]}), "Scores & more", "my_table",
                           ["A note with 50% of it."])
    tex = render.to_latex(table)
    assert tex.index(r"\begin{table}") < tex.index(r"\caption{Scores \& more}") < tex.index(r"\label{tab:my_table}")
    assert tex.index(r"\toprule") < tex.index(r"\bottomrule") < tex.index(r"\footnotesize") < tex.index(r"\end{table}")
    assert r"lora\_peft" in tex and r"$\geq$ 90" in tex and r"A note with 50\% of it.\par" in tex


def test_paths_in_cells_are_never_absolute(tmp_path):
    text = f"{tmp_path}/multirun/sweep/run-1 and wandb:me/proj/run and 2/3 and https://x.org/a/b"
    assert render.short_paths(text) == "…/multirun/sweep/run-1 and wandb:me/proj/run and 2/3 and https://x.org/a/b"


def test_html_page_stands_alone(tmp_path, monkeypatch):
    """index.html: one inline stylesheet, every PNG embedded by a relative path, no absolute path anywhere (the
    records' output_dir and the paths given are absolute here)."""
    runs_dir = tmp_path / "runs"
    for record in rank_sweep_records():
        path = runs_dir / record["run_id"] / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(dict(record, output_dir=str(path.parent))))
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "run.json").write_text("{")
    assert report.main([str(runs_dir), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    pngs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out" / "plots").glob("*.png"))
    assert pngs and all(f'<img src="{p}"' in page for p in pngs)
    assert str(tmp_path) not in page and 'src="/' not in page and 'href="/' not in page
    assert page.count("<style>") == 1 and "<caption>" in page and 'class="scroll"' in page


def test_html_page_refuses_absolute_plot_paths(tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        render.html_page("Report", "x", [], [str(tmp_path / "plots" / "a.png")])


def test_learning_curves_facet_many_configurations(tmp_path):
    """30 configurations (2 inits × 3 target sets × 5 ranks): a panel per (LoRA, targets, init), lines = its ranks,
    one colour and marker each; the same runs give the same bytes."""
    records = []
    for init in ("gaussian", "kaiming"):
        for targets in (["q"], ["q", "v"], ["q", "k", "v", "o"]):
            for r in (1, 2, 4, 8, 64):
                records.append(lora_record(0, 0.8 + 0.001 * r, r, targets, f"{init}{len(targets)}{r}", init=init))
    runs, _, tasks = frames(records)
    fig, why = plots.learning_curves(plots._scores(runs), "SST-2")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert isinstance(fig, Figure) and why is None and len(panels) == 6
    assert all(len(ax.get_lines()) == 5 for ax in panels)
    styles = [(line.get_color(), line.get_marker()) for line in panels[0].get_lines()]
    assert len(set(styles)) == 5 and len({m for _, m in styles}) == 5
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["r=1", "r=2", "r=4", "r=8", "r=64"]
    first, _ = plots.make_plots(runs, tmp_path / "a" / "plots", tasks)
    plots.make_plots(runs, tmp_path / "b" / "plots", tasks)
    for rel in first:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def e2e_record(method, seed, bleu, epochs=1, zero_shot=None, **kw):
    """A SmolLM2 E2E run: BLEU `bleu`, the other four metrics fixed offsets of it (NIST 10×, METEOR −0.2 …)."""
    best = {"bleu": bleu, "nist": 10 * bleu, "meteor": bleu - 0.2, "rouge_l": bleu + 0.05, "cider": 3 * bleu}
    record = make_record("smollm2", "e2e", method, seed, best, train=2000, **kw)
    record["config"]["trainer"]["epochs"] = epochs
    record.update(run_id=record["run_id"] + f"-e{epochs}", _source=f"runs/{method}-{seed}-e{epochs}/run.json")
    return record if zero_shot is None else dict(record, zero_shot=zero_shot)


def test_table3_layout_zero_shot_first_and_intervals_for_every_metric():
    """Table 3 on E2E records: the zero-shot row (epochs=0, marked in the record) comes first as "SmolLM2 (zero-shot)"
    with nothing trained; trained rows keep their own size labels (epochs=1 splits nothing); each of the five metrics
    gets a 95 % t interval over the two seeds: mean ± t(0.975, 1)·s/√2 with t = 12.706."""
    records = [e2e_record("full_ft", 0, 0.05, epochs=0, zero_shot=True, params=134_515_008)]
    records += [e2e_record("full_ft", s, b, params=134_515_008) for s, b in ((0, 0.60), (1, 0.62))]
    records += [e2e_record("lora", s, b, r=8, targets=["q", "v"], params=460_800) for s, b in ((0, 0.70), (1, 0.72))]
    runs, agg, tasks = frames(records)
    spec = rt.table_specs(agg, tasks)[0]
    assert spec["name"] == "table3_e2e" and [label for label, _, _ in spec["columns"]] == [
        "BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr"]
    table = rt.build_table(agg, spec)
    text = [[c["text"] for c in row] for row in table["rows"]]
    assert [row[:4] for row in text] == [["smollm2", "SmolLM2 (zero-shot)", "–", "0"],
                                         ["smollm2", "FT", "–", "134.5M"],
                                         ["smollm2", "LoRA", "r=8 {q,v}", "0.5M"]]
    assert text[0][4:] == ["5.0", "0.50", "-15.0", "10.0", "0.15"]               # one run: its values, ×100 or as is
    assert text[2][4:] == ["71.0", "7.10", "51.0", "76.0", "2.13"]               # medians of the two seeds
    assert any(n.startswith("SmolLM2 (zero-shot): the model as loaded") and "method full_ft" in n
               for n in table["notes"])
    assert "Training examples: 2000 (trainer.max_train_samples)." in table["notes"]
    half = 12.706 * 0.01                      # s = 0.02/√2 for two values 0.02 apart; s/√2 = 0.01
    lora = [c["text"] for c in rt.interval_table(agg, spec)["rows"][2][3:]]
    expected = [(0.71, 100, 1), (7.1, 1, 2), (0.51, 100, 1), (0.76, 100, 1), (2.13, 1, 2)]
    scale = [1, 10, 1, 1, 3]                  # NIST and CIDEr move 10× and 3× BLEU: their half-widths too
    for text_cell, (mean, factor, digits), k in zip(lora, expected, scale):
        low, high = (mean - k * half) * factor, (mean + k * half) * factor
        assert text_cell == f"{mean * factor:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] (n=2)"


def test_a_completed_run_without_a_score_is_listed_never_dropped():
    """A split decoded without references (E2E's released test MRs) completes with an empty metrics.best: no cell,
    and the list of runs left out of the tables names it with why."""
    scored = e2e_record("lora", 0, 0.70, r=8, targets=["q", "v"])
    unscored = dict(e2e_record("lora", 1, 0.70, r=8, targets=["q", "v"]), _source="runs/test-split/run.json")
    unscored["metrics"] = dict(unscored["metrics"], best={}, per_epoch=[])
    runs, agg, _ = frames([scored, unscored])
    left = sections.not_in_tables(runs)
    assert left["status"].tolist() == ["completed, no score (its run.json says why)"]
    assert left["source"].tolist() == ["runs/test-split/run.json"]
    assert agg[agg["metric"] == "bleu"]["n"].tolist() == [1]
