"""A protocol at work: the runner applies it and records what the run really did (`effective`), a command-line
override is a flagged deviation, and harness-report lists every deviation and keeps the scorecard honest."""
import json

import pandas as pd
import pytest

from harness import protocols, report
from harness.protocols import effective
from harness.runner import run
from tests.conftest import compose_cfg
from tests.test_report import make_record

# A protocol for the tiny model, in the shipped format (harness/protocols/paper.yaml), so that runs can follow one.
TINY = """
name: paper
tasks: [sst2, mnli, mrpc]
rows:
  - id: tiny-lora
    source: Table T (a test's)
    setups: [main]
    models: [tiny-bert]
    methods: [lora]
    tasks: [sst2, mnli, mrpc]
    values:
      batch: 8
      epochs: 1
      lr: 2.0e-3
      max_seq_len: 64
      r: 4
      alpha: 8
      targets: [q, v]
      init: {sst2: null, mnli: null, mrpc: mnli}
"""


@pytest.fixture
def tiny_protocol(tmp_path, monkeypatch):
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "paper.yaml").write_text(TINY)
    monkeypatch.setattr(protocols, "FOLDER", folder)
    protocols.load.cache_clear()
    yield
    protocols.load.cache_clear()


def test_a_run_under_the_protocol_records_its_effective_settings_and_an_override(tiny_protocol, tiny_overrides,
                                                                                  tmp_path):
    base = [o for o in tiny_overrides if not o.startswith(("trainer.batch_size", "trainer.epochs"))]
    overrides = [*base, "method=lora", "+protocol=paper", "trainer.epochs=2"]   # the protocol says 1
    record = run(compose_cfg(*overrides), tmp_path / "run", overrides=overrides)
    assert record["status"] == "completed"
    trainer = record["config"]["trainer"]
    assert (trainer["batch_size"], trainer["epochs"], trainer["max_seq_len"], trainer["lr"]) == (8, 2, 64, 2e-3)
    assert (record["config"]["method"]["r"], record["params"]["trainable_no_head"]) == (4, 2 * 2 * 2 * 32 * 4)
    eff = record["effective"]
    # 32 fixture examples in batches of 8 on one process: 4 steps an epoch, 8 in all; warm-up round(0.06 · 8) = 0
    assert (eff["global_batch"], eff["steps_per_epoch"], eff["steps_planned"], eff["warmup_steps"]) == (8, 4, 8, 0)
    assert record["cost"]["steps"] == eff["steps_planned"] and (eff["alpha"], eff["init"]) == (8, None)
    block = record["protocol"]
    assert block["overridden"] == {"epochs": 2} and block["cell"] == "tiny-bert × sst2 × lora"
    assert [protocols.describe(d) for d in block["deviations"]] == ["epochs 2 (paper 1)"] and block["flagged"]
    assert "protocol_deviation" in record["flags"]
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "run"), "--out", str(out)]) == 0
    index = (out / "README.md").read_text()
    section = index.split("## Protocol check (the paper's training settings)")[1].split("\n## ")[0]
    assert "| tiny-bert | sst2 | lora | r=4 {q,v} | 0 | paper | epochs 2 (paper 1) |  | ! |" in section
    assert "protocol_deviation" in index.split("## Flagged runs")[1]


def test_a_stage_started_from_mnli_follows_the_protocol(tiny_protocol, tiny_overrides, tmp_path):
    base = [o for o in tiny_overrides if not o.startswith(("trainer.batch_size", "trainer.epochs"))]
    mnli = run(compose_cfg(*base, "task=glue/mnli", "+protocol=paper"), tmp_path / "mnli-lora-0")
    assert mnli["status"] == "completed" and mnli["protocol"]["deviations"] == [] and not mnli["protocol"]["flagged"]
    without = [*base, "task=glue/mrpc", "+protocol=paper"]
    with pytest.raises(Exception, match="starts from the MNLI-adapted run"):
        run(compose_cfg(*without), tmp_path / "mrpc-alone", overrides=without)
    overrides = [*base, "task=glue/mrpc", "+protocol=paper", f"method.init_from={tmp_path}/mnli-lora-*"]
    mrpc = run(compose_cfg(*overrides), tmp_path / "mrpc", overrides=overrides)
    assert mrpc["effective"]["init"] == "mnli" and mrpc["protocol"]["deviations"] == []
    assert "protocol_deviation" not in mrpc["flags"]


def paper_cell_records(lrs):
    """RoBERTa-base × CoLA × LoRA (r 8 on q, v: 294,912 parameters, the paper's 0.3M), full data, one run per lr, each
    with the effective block of Table 9's CoLA recipe but for its lr."""
    records = []
    for seed, lr in enumerate(lrs):
        record = make_record("roberta-base", "cola", "lora", seed, 0.634, r=8, targets=["q", "v"], params=294_912,
                             train=None)
        record["config"]["trainer"]["lr"] = lr
        record["config"]["protocol"] = {"name": "paper", "setup": "main", "varies": []}
        config = {"trainer": {"batch_size": 32, "epochs": 80, "lr": lr, "warmup_ratio": 0.06, "max_seq_len": 512},
                  "method": {"r": 8, "alpha": 8, "targets": ["q", "v"]}, "task": {"splits": {"eval": ["dev"]}}}
        record["effective"] = effective.settings(config, 8551, world=1)
        records.append(record)
    return records


def write_records(folder, records):
    for i, record in enumerate(records):
        path = folder / f"run{i}" / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))


def test_the_scorecard_counts_a_row_comparable_only_without_deviations(tmp_path):
    write_records(tmp_path / "runs", paper_cell_records([4e-4, 4e-4, 1e-3]))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    card = pd.read_csv(tmp_path / "out" / "scorecard.csv")
    base = card[card["paper_model"] == "RoB-base"].set_index("variant")
    assert base.loc["r=8 {q,v} lr=0.0004", "comparable"] == "yes"
    assert base.loc["r=8 {q,v} lr=0.001", "comparable"] == "no"
    assert base.loc["r=8 {q,v} lr=0.001", "why"].startswith("protocol: lr 0.001 (paper 0.0004)")
    index = (tmp_path / "out" / "README.md").read_text()
    section = index.split("## Protocol check (the paper's training settings)")[1].split("\n## ")[0]
    assert section.count("| roberta-base | cola | lora |") == 3
    assert "| 2 | paper | lr 0.001 (paper 0.0004) |  | ! |" in section and section.count("| none |  |  |") == 2
    assert "follow the paper's protocol for the cell in every setting" in index


def test_runs_without_an_effective_block_leave_the_report_as_it_was(tmp_path):
    records = paper_cell_records([4e-4])
    del records[0]["effective"], records[0]["config"]["protocol"]
    write_records(tmp_path / "runs", records)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    index = (tmp_path / "out" / "README.md").read_text()
    assert "Protocol check" not in index and "protocol" not in (tmp_path / "out" / "scorecard.csv").read_text()
