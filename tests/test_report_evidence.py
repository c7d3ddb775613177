"""Paired evidence in the report: bold marks the best cell and every cell not significantly worse (ties included), and
the claim scorecard reaches each of its four verdicts on synthetic records."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from harness import report
from harness.report import claims, tables
from tests.test_report import make_record

N = 300   # evaluation examples per run


def write_run(root, method, seed, correct: np.ndarray, r=None, targets=None, train=2000):
    """A run.json and its predictions.jsonl.gz: `correct[i]` says whether example i is predicted right."""
    labels = np.arange(N) % 2
    preds = np.where(correct, labels, 1 - labels)
    record = make_record("minilm", "sst2", method, seed, float(correct.mean()), r=r, targets=targets, train=train)
    folder = root / f"{method}-{r}-{train}-{seed}"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(record))
    with gzip.open(folder / "predictions.jsonl.gz", "wt") as handle:
        for i, (y, p) in enumerate(zip(labels, preds)):
            handle.write(json.dumps({"id": i, "label": int(y), "prediction": int(p), "scores": [0.0, 0.0]}) + "\n")


def correct_at(rate: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(N) < rate


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    for seed in range(3):
        base = correct_at(0.90, seed)
        write_run(root, "full_ft", seed, base)                                   # the best
        write_run(root, "lora", seed, base, r=8, targets=["q", "v"])              # a tie: identical predictions
        near = base.copy()
        near[np.flatnonzero(base)[:2]] = False                                   # 2 of 300 fewer: within noise
        write_run(root, "adapter_h", seed, near, r=8)
        write_run(root, "bitfit", seed, correct_at(0.70, seed + 10))             # far worse
    files, _ = report.find_run_files([str(root)])
    records, _ = report.load_records(files)
    runs = report.records_to_frame(records)
    return runs, tables.aggregate(runs), root


def test_bold_marks_ties_and_cells_not_significantly_worse(frames):
    runs, agg, _ = frames
    spec = tables.table_specs(agg, report.tasks_in(runs))[0]
    table = tables.build_table(agg, spec, tables.completed_runs(runs))
    bold = {row[1]["text"]: row[4]["bold"] for row in table["rows"]}
    assert bold == {"FT": True, "LoRA": True, "Adpt": True, "BitFit": False}
    assert any("paired approximate-randomization test over evaluation examples" in n for n in table["notes"])


def test_a_value_that_could_not_be_tested_is_not_bold(tmp_path):
    """One seed and no per-example predictions: no test against the column's best, so no bold (bold would claim a
    parity nothing showed); the best itself stays bold and the note says why the others are not."""
    for method, score in (("full_ft", 0.91), ("lora", 0.905), ("bitfit", 0.60)):
        (tmp_path / method).mkdir()
        (tmp_path / method / "run.json").write_text(json.dumps(make_record("minilm", "sst2", method, 0, score)))
    files, _ = report.find_run_files([str(tmp_path)])
    runs = report.records_to_frame(report.load_records(files)[0])
    agg = tables.aggregate(runs)
    spec = tables.table_specs(agg, report.tasks_in(runs))[0]
    table = tables.build_table(agg, spec, tables.completed_runs(runs))
    bold = {row[1]["text"]: row[4]["bold"] for row in table["rows"]}
    assert bold == {"FT": True, "LoRA": False, "BitFit": False}
    assert any("could not be tested against it are not bold" in n for n in table["notes"])


def _card(frames, claim):
    runs = frames[0]
    return claims.evaluate_runs(claim, tables.completed_runs(runs))


@pytest.mark.parametrize("test,a,b,margin,expected", [
    ("superior", "full_ft", "bitfit", 0.0, "supported"),        # +20 points, far outside noise
    ("superior", "bitfit", "full_ft", 0.0, "contradicted"),     # the other way round
    ("superior", "adapter_h", "full_ft", 0.0, "inconclusive"),  # −0.7 points with an interval across 0
    ("noninferior", "adapter_h", "full_ft", 2.0, "supported"),  # within 2 points
    ("equivalent", "lora", "full_ft", 1.0, "supported"),        # identical predictions
])
def test_a_claim_reaches_each_verdict(frames, test, a, b, margin, expected):
    claim = {"id": "x", "claim": "x", "source": "T", "paper": "p", "test": test, "margin": margin,
             "a": {"method": a}, "b": {"method": b}}
    rows = _card(frames, claim)
    assert len(rows) == 1 and rows[0]["verdict"] == expected, rows
    assert rows[0]["evidence"] == "examples" and rows[0]["seeds"] == 3 and rows[0]["examples"] == N


def test_a_claim_without_runs_is_not_run(frames):
    path = frames[2] / "claims.yaml"
    path.write_text("claims:\n  - {id: y, claim: y, source: T, paper: p, test: superior, margin: 0,\n"
                    "     a: {method: prefix_layer}, b: {method: lora}}\n")
    card = claims.scorecard(tables.completed_runs(frames[0]), path=str(path))
    assert list(card["verdict"]) == ["not run"]


def test_a_claim_is_tested_only_on_its_tables_task_family(frames):
    """Table 2's claims were measured on GLUE: an E2E (or WikiSQL) report does not test them, Table 3's claims do."""
    claim = {"id": "x", "claim": "x", "source": "T", "paper": "p", "test": "superior", "margin": 0.0,
             "a": {"method": "full_ft"}, "b": {"method": "bitfit"}}
    for i, (where, verdict) in enumerate([([("task_family", "glue")], ["supported"]),
                                          ([("task_family", "e2e")], ["not run"]),
                                          ([("tasks", ["e2e"])], ["not run"]), ([("tasks", ["sst2"])], ["supported"])]):
        path = frames[2] / f"claims_family_{i}.yaml"   # claims files are read once per path
        path.write_text(yaml.safe_dump({"claims": [{**claim, **dict(where)}]}))
        assert list(claims.scorecard(tables.completed_runs(frames[0]), path=str(path))["verdict"]) == verdict, where
    shipped = {c["id"]: c for c in claims.load()}
    assert all(c.get("task_family") == "glue" for c in shipped.values() if c["source"] == "Table 2")
    assert all(c.get("tasks") == ["e2e"] for c in shipped.values() if c["source"] == "Table 3")
    assert {"lora-vs-ft-e2e", "lora-vs-prefix-layer-e2e", "lora-vs-adapter-h-e2e", "lora-vs-adapter-l-e2e",
            "lora-vs-ft-top2-e2e"} <= set(shipped)


def test_verdict_boundaries():
    assert claims.verdict("noninferior", -0.5, 2.0, 1.0)[0] == "supported"
    assert claims.verdict("noninferior", -3.0, -1.5, 1.0)[0] == "contradicted"
    assert claims.verdict("noninferior", -1.5, 0.5, 1.0)[0] == "inconclusive"
    assert claims.verdict("equivalent", -2.0, 0.5, 1.0)[0] == "inconclusive"
    assert claims.verdict("superior", float("nan"), float("nan"), 0.0)[0] == "inconclusive"


def test_the_report_leads_with_the_claim_scorecard(frames, tmp_path):
    runs = frames[0]
    index = report.write_report(runs, [], [], tmp_path / "out", formats=("md", "csv"))
    assert index.index("## Claim scorecard") < index.index("## Table 2")
    card = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert set(card["verdict"]) <= {"supported", "contradicted", "inconclusive", "not run"}


def test_runs_whose_settings_are_unknown_are_listed(tmp_path):
    """A record with no trainer or method settings cannot be placed in a cell by its settings: the report lists it."""
    from harness.report import sections

    placed = make_record("minilm", "sst2", "lora", 0, 0.9, r=8, targets=["q", "v"])
    bare = {**make_record("minilm", "sst2", "lora", 1, 0.8), "config": {"model": {"name": "minilm"}}}
    for i, record in enumerate((placed, bare)):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "run.json").write_text(json.dumps(record))
    files, _ = report.find_run_files([str(tmp_path)])
    runs = report.records_to_frame(report.load_records(files)[0])
    unplaced = sections.unplaced_runs(runs)
    assert list(unplaced["seed"]) == [1]


def test_a_single_runs_cell_shows_its_own_bootstrap_interval(tmp_path):
    record = make_record("minilm", "sst2", "lora", 0, 0.84, r=8, targets=["q", "v"])
    record["metrics"]["interval"] = {"metric": "accuracy", "value": 0.84, "low": 0.82, "high": 0.867}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    files, _ = report.find_run_files([str(tmp_path)])
    runs = report.records_to_frame(report.load_records(files)[0])
    agg = tables.aggregate(runs)
    cell = agg[agg["metric"] == "accuracy"].iloc[0]
    assert (cell["low"], cell["high"], cell["interval"], cell["n"]) == (0.82, 0.867, "examples", 1)
    spec = tables.table_specs(agg, report.tasks_in(runs))[0]
    text = tables.interval_table(agg, spec)["rows"][0][3]["text"]
    assert text == "84.0 [82.0, 86.7] (n=1, examples)"


def test_the_adalora_claim_compares_only_equal_rank_and_targets(frames, tmp_path):
    """`match: [variant_size, targets]`: AdaLoRA at target_r = r is paired with LoRA at r on the same weight types only
    (not r = 1 with r = 8, not {q,v} with {q,k,v,o}); with no run of the LoRA family the claim is not listed."""
    claim = next(c for c in claims.load() if c["id"] == "adalora-vs-lora")
    assert claim["match"] == ["variant_size", "targets"]
    assert not any(r["claim"].startswith("adalora-vs-lora")    # a LoRA-family claim: listed only where the family ran
                   for _, r in claims.scorecard(tables.completed_runs(frames[0])).iterrows())
    for seed in range(2):
        for r in (1, 8):
            write_run(tmp_path, "lora", seed, correct_at(0.8, seed), r=r, targets=["q", "v"])
            write_run(tmp_path, "adalora", seed, correct_at(0.8, seed + r), r=r, targets=["q", "v"])
        write_run(tmp_path / "qkvo", "lora", seed, correct_at(0.8, seed), r=8, targets=["q", "k", "v", "o"])
    for path in tmp_path.glob("adalora-*/run.json"):   # AdaLoRA's size is target_r
        record = json.loads(path.read_text())
        method = record["config"]["method"]
        method["target_r"] = method.pop("r")
        path.write_text(json.dumps(record))
    files, _ = report.find_run_files([str(tmp_path)])
    runs = report.records_to_frame(report.load_records(files)[0])
    rows = claims.evaluate_runs(claim, tables.completed_runs(runs))
    assert sorted((row["a"], row["b"]) for row in rows) == [("adalora target_r=1 {q,v}", "lora r=1 {q,v}"),
                                                            ("adalora target_r=8 {q,v}", "lora r=8 {q,v}")]


# E2E: BLEU is a corpus metric, so the paired test resamples MRs through their n-gram counts (generations.txt and
# references.txt beside each run.json, the official scorer's files).
MRS = 60
WORDS = "the eagle is a family friendly coffee shop near burger king in the city centre with low prices".split()


def write_e2e_run(root, method, seed, hypotheses, references, name=None):
    """A run.json whose five scores are the official scorer's on `hypotheses` (METEOR pooled from its per-MR
    statistics: one jar for the whole test session), with generations.txt and references.txt; returns the scores."""
    from harness.metrics.e2e import coco_inputs, coco_scores, corpus_meteor_of_rows, meteor_rows_of, mteval_bleu_nist

    scored = references[:len(hypotheses)]   # a run one generation short (a broken record) is scored on what it has
    bleu, nist = mteval_bleu_nist(hypotheses, scored)
    meteor = corpus_meteor_of_rows(meteor_rows_of(*coco_inputs(hypotheses, scored)))
    scores = {"bleu": bleu, "nist": nist, "meteor": meteor, **coco_scores(hypotheses, scored, meteor=False)}
    folder = root / (name or f"e2e-{method}-{seed}")
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(make_record("smollm2", "e2e", method, seed, scores, train=2000)))
    (folder / "generations.txt").write_text("".join(h + "\n" for h in hypotheses))
    (folder / "references.txt").write_text("\n".join("\n".join(rs) + "\n" for rs in references))
    return scores


def e2e_corpus(seed: int, rate: float):
    """(references: 3 per MR, hypotheses: each MR's first reference with about `rate` of its words damaged)."""
    rng = np.random.default_rng(seed)
    refs = [[" ".join(rng.choice(WORDS, 12)) for _ in range(3)] for _ in range(MRS)]
    return refs, damage(refs, rate, seed)


def test_e2e_cells_are_compared_over_mrs_from_their_segment_statistics(tmp_path):
    """BLEU and NIST from each MR's n-gram sums, ROUGE-L and CIDEr-D from each MR's score, METEOR from each MR's
    statistics: the observed difference is the recorded one (the official scorer's figures, recomputed from the rows),
    tested over the MRs."""
    from harness.report import evidence

    refs = e2e_corpus(0, 0.0)[0]
    near, bad = {}, {}
    for seed in range(3):
        near[seed] = write_e2e_run(tmp_path, "lora", seed, damage(refs, 0.1, seed), refs)
        bad[seed] = write_e2e_run(tmp_path, "ft_top2", seed, [" ".join(h.split()[:4]) for h in damage(refs, 0.1, seed)],
                                  refs)                                    # truncated to 4 words: far worse
    files, _ = report.find_run_files([str(tmp_path)])
    runs = tables.completed_runs(report.records_to_frame(report.load_records(files)[0]))
    lora, top2 = runs[runs.method == "lora"], runs[runs.method == "ft_top2"]
    evidence.forget()
    for metric in ("bleu", "nist", "meteor", "rouge_l", "cider"):
        worse = evidence.compare(top2, lora, metric)
        # the observed difference is the recorded one, over all 60 MRs
        assert worse["evidence"] == "examples" and worse["seeds"] == 3 and worse["examples"] == MRS, metric
        assert worse["diff"] == pytest.approx(np.mean([bad[s][metric] - near[s][metric] for s in range(3)]),
                                              abs=1e-12), metric
        # significant over MRs, where the sign-flip test over 3 seeds could not go below p = 0.25
        assert worse["p_value"] < 0.01 and worse["high"] < 0, metric
        tie = evidence.compare(lora, lora, metric)
        assert tie["diff"] == 0 and tie["p_value"] == 1.0


def damage(refs, rate: float, seed: int) -> list[str]:
    """Each MR's first reference with about `rate` of its words replaced by one that is in no reference."""
    rng = np.random.default_rng(seed)
    return [" ".join("zzz" if rng.random() < rate else w for w in rs[0].split()) for rs in refs]


def test_e2e_runs_on_other_references_are_not_paired_over_mrs(tmp_path):
    from harness.report import evidence

    refs, hyps = e2e_corpus(0, 0.2)
    other = [rs[:2] for rs in refs]                        # the same MRs, one reference fewer: another evaluation
    for seed in range(2):
        write_e2e_run(tmp_path, "full_ft", seed, hyps, refs)
        write_e2e_run(tmp_path, "lora", seed, hyps, other)
    write_e2e_run(tmp_path, "adapter_h", 0, hyps[:-1], refs)   # one generation short of its references
    (tmp_path / "e2e-adapter_h-0" / "references.txt").write_text("\n".join("\n".join(rs) + "\n" for rs in refs))
    files, _ = report.find_run_files([str(tmp_path)])
    runs = tables.completed_runs(report.records_to_frame(report.load_records(files)[0]))
    evidence.forget()
    assert evidence.compare(runs[runs.method == "lora"], runs[runs.method == "full_ft"], "bleu")["evidence"] == "seeds"
    assert evidence.compare(runs[runs.method == "adapter_h"], runs[runs.method == "full_ft"],
                            "bleu")["evidence"] == "one seed"


def test_e2e_coco_metrics_fall_back_to_seeds_without_the_tokenizer(tmp_path, monkeypatch):
    """METEOR, ROUGE-L and CIDEr-D per MR need the PTB tokenizer's Java: without it the report warns and tests those
    cells over seeds, and BLEU (pure Python) is still tested over MRs."""
    from harness.report import evidence

    refs, hyps = e2e_corpus(0, 0.2)
    for seed in range(2):
        write_e2e_run(tmp_path, "full_ft", seed, hyps, refs)
        write_e2e_run(tmp_path, "lora", seed, damage(refs, 0.3, seed), refs)

    def no_java(*_):
        raise FileNotFoundError("java")

    monkeypatch.setattr(evidence, "coco_inputs", no_java)
    files, _ = report.find_run_files([str(tmp_path)])
    runs = tables.completed_runs(report.records_to_frame(report.load_records(files)[0]))
    evidence.forget()
    lora, ft = runs[runs.method == "lora"], runs[runs.method == "full_ft"]
    for metric in ("meteor", "rouge_l", "cider"):
        with pytest.warns(UserWarning, match=f"{metric}: no per-MR scores"):
            assert evidence.compare(lora, ft, metric)["evidence"] == "seeds"
    assert evidence.compare(lora, ft, "bleu")["evidence"] == "examples"
