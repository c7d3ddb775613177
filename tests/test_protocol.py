"""The paper's protocols as data (harness/protocols/paper.yaml): what `+protocol=paper` applies, that the paper-sized
sweeps compose to exactly the paper's values, that the data says what the reference notes say, and what a deviation
does to the record and the report."""
import itertools
import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from harness import catalog, outputs, protocols, results
from harness.protocols import effective
from harness.run import CONF_DIR
from tests.conftest import REPO, compose_cfg

NOTES = REPO.parent / "shared" / "reference" / "lora_paper.md"
PAPER_SIZED = ("glue_table2", "glue_table2_stage2", "e2e_table3", "lora_rank", "lora_targets_budget")


def composed(*overrides):
    """(resolved config without the hydra node, the overrides a Hydra job would see)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(job, resolve=True), list(cfg.hydra.overrides.task)


def prepared(*overrides, world=1):
    config, seen = composed(*overrides)
    return protocols.prepare(config, seen, world=world)


def test_the_issue_example_trains_with_table_9_cola():
    done = prepared("model=roberta-base", "task=glue/cola", "method=lora", "+protocol=paper")
    trainer, method = done.config["trainer"], done.config["method"]
    assert done.problems == []
    # Table 9, CoLA column: batch 32, 80 epochs, lr 4e-4; α 8, r 8 on Wq, Wv, sequence length 512, warm-up 0.06
    assert (trainer["batch_size"], trainer["epochs"], trainer["lr"], trainer["max_seq_len"]) == (32, 80, 4e-4, 512)
    assert (method["alpha"], method["r"], method["targets"], trainer["warmup_ratio"]) == (8, 8, ["q", "v"], 0.06)
    assert done.info["cell"] == "roberta-base × cola × lora" and done.info["source"] == "Table 9 (RoBERTa-base LoRA)"


def sweep_cells(name):
    """Every cell of a sweep (model × task × method and what else it varies), as the overrides Hydra's basic sweeper
    gives its jobs (the cartesian product of its params), at the first of its seeds (a seed changes no setting)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+sweep={name}"], return_hydra_config=True)
    parser = OverridesParser.create()
    axes = [[f"{o.key_or_group}={v}" for v in o.sweep_string_iterator()][:1 if o.key_or_group == "seed" else None]
            for o in parser.parse_overrides([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])]
    return [[f"+sweep={name}", *job] for job in itertools.product(*axes)]


@pytest.mark.parametrize("name", PAPER_SIZED)
def test_every_cell_of_the_paper_sized_sweeps_has_the_papers_values(name):
    cells = sweep_cells(name)
    assert cells
    for job in cells:
        done = prepared(*job)
        config = done.config
        assert done.problems == [], (job, done.problems)
        names = [config[group]["name"] for group in ("model", "task", "method")]
        cell = protocols.cell("paper", "main", *names)
        varies = config["protocol"]["varies"]
        for key, value in cell.values.items():
            if key in varies or key == "init":
                continue
            used = protocols._get(config, protocols.KEYS[key])
            assert protocols.same(value, used), (job, key, value, used)
        # what the run will record (effective) checks clean against the same data, the start included
        init = {"task": cell.values.get("init"), "run_dir": "x"} if cell.values.get("init") else None
        check = protocols.check(*names, effective.settings(config, 1000, init, world=1), protocols.spec_of(config))
        assert [d for d in check["deviations"] if not d["varied"]] == [] and not check["flagged"], job
        assert set(d["key"] for d in check["deviations"]) <= set(varies)


def test_table2_stages_cover_every_glue_task_and_start_from_mnli_where_the_paper_does():
    tasks = {stage: {dict(o.split("=", 1) for o in job[1:])["task"].split("/")[1] for job in sweep_cells(stage)}
             for stage in ("glue_table2", "glue_table2_stage2")}
    assert tasks["glue_table2"] | tasks["glue_table2_stage2"] == set(catalog.task_names()) - {"e2e", "wikisql"}
    row = next(r for r in protocols.load("paper")["rows"] if r["id"] == "roberta-base-lora")
    assert tasks["glue_table2_stage2"] == {t for t, v in row["values"]["init"].items() if v == "mnli"}
    config, _ = composed("+sweep=glue_table2_stage2")
    assert config["method"]["init_from"] == "multirun/glue_table2/mnli-lora-*"


def _number(text):
    return float(text) if re.search(r"[.e]", text) else int(text)


def paper_notes(text):
    """(row id, task, key) → value, for every protocol value lora_paper.md states."""
    label = {catalog.task_meta(t)["label"]: t for t in catalog.task_names()}
    found = {}
    base = re.search(r"RoBERTa-base LoRA hyperparameters \(paper Table 9\):(.*)\n((?:\|.*\n)+)", text)
    head = base.group(1)
    table = [[c.strip() for c in line.strip("|").split("|")] for line in base.group(2).splitlines()]
    columns = glue = [label[c] for c in table[0][1:]]   # the notes' task order (the large lrs are listed in it)
    for row in table[2:]:
        for task, cell in zip(columns, row[1:]):
            found[("roberta-base-lora", task, row[0])] = _number(cell)   # rows batch, epochs, lr: the keys' names
    shared = {"warmup_ratio": float(re.search(r"warmup ratio ([\d.]+)", head).group(1)),
              "r": int(re.search(r"r=(\d+)", head).group(1)), "alpha": int(re.search(r"α=(\d+)", head).group(1)),
              "max_seq_len": int(re.search(r"max seq len (\d+)", head).group(1)),
              "targets": ["q", "v"] if "Wq and Wv" in head else None}
    starts = re.search(r"([A-Z][\w-]+), ([A-Z][\w-]+) and ([A-Z][\w-]+) start from the (\w+)-adapted", text)
    from_mnli = {label[t]: label[starts.group(4)] for t in starts.groups()[:3]}
    large = re.search(r"RoBERTa-large: α=(\d+), lr per task ([\d./e-]+?)\.?\n", text)
    for task, lr in zip(glue, large.group(2).split("/")):
        found.update({("roberta-base-lora", task, k): v for k, v in shared.items()})
        found[("roberta-large-lora", task, "lr")], found[("roberta-large-lora", task, "alpha")] = float(lr), int(
            large.group(1))
        for row in ("roberta-base-lora", "roberta-large-lora"):
            found[(row, task, "init")] = from_mnli.get(task)
    dagger = re.search(r"`†` Houlsby-style setup \(seq len (\d+), fixed batch, no MNLI init\)", text)
    for row, task in itertools.product(("roberta-large-lora-houlsby", "roberta-large-adapters-houlsby"), glue):
        found[(row, task, "max_seq_len")], found[(row, task, "init")] = int(dagger.group(1)), None
    gpt2 = re.search(r"GPT-2 training \(paper Table 11\):(.*\n.*)", text).group(1)
    patterns = {"batch": r"batch (\d+)", "epochs": r"(\d+) epochs", "lr": r"lr ([\de.-]+)",
                "warmup_steps": r"(\d+) warmup steps", "label_smoothing": r"label smoothing ([\d.]+)",
                "r": r"r=(\d+)", "alpha": r"α=(\d+)", "num_beams": r"beam (\d+)",
                "length_penalty": r"length penalty ([\d.]+)", "no_repeat_ngram_size": r"no-repeat n-gram (\d+)"}
    for key, pattern in patterns.items():
        found[("gpt2-e2e-lora", "e2e", key)] = _number(re.search(pattern, gpt2).group(1))
    found[("gpt2-e2e-lora", "e2e", "targets")] = ["q", "v"] if "on Wq,Wv" in gpt2 else None
    found[("gpt2-e2e-lora", "e2e", "eval_split")] = "test" if "## Table 3 — E2E NLG test set" in text else None
    return found


def test_protocol_data_says_what_the_paper_notes_say():
    if not NOTES.is_file():
        pytest.skip(f"{NOTES} not found (../shared is absent)")
    notes = paper_notes(NOTES.read_text(encoding="utf-8"))
    data = {}
    for row in protocols.load("paper")["rows"]:
        for task in row["tasks"]:
            cell = protocols.cell("paper", row["setups"][0], row["models"][0], task, row["methods"][0])
            assert cell.row == row["id"]
            data.update({(row["id"], task, k): v for k, v in cell.values.items()})
            for key in cell.missing:   # declared missing: the notes must indeed lack it
                assert (row["id"], task, key) not in notes, (row["id"], task, key)
    # both ways: every value of the data is in the notes (nothing guessed), every value of the notes is in the data
    assert set(data) == set(notes)
    for key, value in notes.items():
        assert protocols.same(value, data[key]), (key, value, data[key])
    assert data[("roberta-base-lora", "cola", "batch")] == 32 and data[("roberta-large-lora", "stsb", "lr")] == 2e-4


def test_a_command_line_override_wins_and_is_recorded_as_a_deviation():
    done = prepared("model=roberta-base", "task=glue/sst2", "+protocol=paper", "trainer.lr=1e-3", "method.alpha=16")
    assert done.config["trainer"]["lr"] == 1e-3 and done.config["method"]["alpha"] == 16
    assert done.config["trainer"]["epochs"] == 60 and done.info["overridden"] == {"lr": 1e-3, "alpha": 16}
    block = effective.settings(done.config, 67349, world=1)
    check = protocols.check("roberta-base", "sst2", "lora", block, protocols.spec_of(done.config))
    assert [protocols.describe(d) for d in check["deviations"]] == ["lr 0.001 (paper 0.0005)", "alpha 16 (paper 8)"]
    assert check["flagged"] and protocols.flags(check) == ["protocol_deviation"]
    # the same settings without asking for the protocol: the same deviations, not flagged
    assert not protocols.check("roberta-base", "sst2", "lora", block, None)["flagged"]


def test_what_an_experiment_varies_is_recorded_not_flagged():
    done = prepared("+sweep=lora_rank", "method.r=2", "method.targets=[q]")
    assert done.info["varied"] == {"r": 2, "targets": ["q"]} and done.info["overridden"] == {}
    check = protocols.check("roberta-base", "mnli", "lora", effective.settings(done.config, 100, world=1),
                            protocols.spec_of(done.config))
    assert {d["key"] for d in check["deviations"]} == {"r", "targets"} and not check["flagged"]


def test_a_cell_the_protocol_does_not_cover_is_one_line_naming_the_covered_cells():
    done = prepared("model=minilm", "task=glue/sst2", "method=bitfit", "+protocol=paper")
    assert len(done.problems) == 1 and "\n" not in done.problems[0]
    assert done.problems[0].startswith("protocol paper (main setup) has no values for minilm × sst2 × bitfit; it "
                                       "covers: roberta-base × {mnli, sst2, mrpc, cola, qnli, qqp, rte, stsb} × "
                                       "{lora, lora_peft}")
    assert prepared("model=roberta-base", "+protocol=paper", "protocol.setup=dagger").problems == [
        "protocol.setup='dagger' is not a valid choice. Valid choices: houlsby, main"]


def test_values_the_notes_lack_must_be_given_on_the_command_line():
    lacking = prepared("model=roberta-large", "task=glue/sst2", "+protocol=paper")
    assert len(lacking.problems) == 1
    assert ("the reference notes lack trainer.batch_size, trainer.epochs, trainer.max_seq_len, method.r, "
            "method.targets") in lacking.problems[0]
    given = prepared("model=roberta-large", "task=glue/sst2", "+protocol=paper", "trainer.batch_size=4",
                     "trainer.epochs=10", "trainer.max_seq_len=128", "method.r=8", "method.targets=[q,v]")
    assert given.problems == [] and given.info["given"]["batch"] == 4
    assert given.config["method"]["alpha"] == 16 and given.config["trainer"]["lr"] == 4e-4   # RoBERTa-large, SST-2
    # the † setup: sequence length 128 and the pretrained start
    houlsby = prepared("model=roberta-large", "task=glue/rte", "method=adapter_h", "+protocol=paper",
                       "trainer.batch_size=32", "trainer.epochs=20", "trainer.lr=3e-4", "method.budget=800000")
    assert houlsby.problems == [] and houlsby.config["trainer"]["max_seq_len"] == 128
    assert houlsby.info["row"] == "roberta-large-adapters-houlsby"


def test_the_global_batch_is_split_over_processes_and_accumulation():
    four = prepared("model=roberta-base", "task=glue/cola", "+protocol=paper", "trainer.grad_accum=2", world=4)
    assert four.config["trainer"]["batch_size"] == 4   # 32 / (4 processes × 2 accumulated batches)
    assert effective.settings(four.config, 8551, world=4)["global_batch"] == 32
    odd = prepared("model=roberta-base", "task=glue/cola", "+protocol=paper", world=3)
    assert odd.problems == ["protocol paper (roberta-base × cola × lora): the global batch 32 is not divisible by "
                            "world size × trainer.grad_accum = 3 × 1"]


def test_mrpc_needs_the_mnli_run_it_starts_from():
    done = prepared("model=roberta-base", "task=glue/mrpc", "+protocol=paper")
    assert len(done.problems) == 1 and "starts from the MNLI-adapted run" in done.problems[0]
    assert "give method.init_from=" in done.problems[0]
    opted_out = prepared("model=roberta-base", "task=glue/mrpc", "+protocol=paper", "method.init_from=null")
    assert opted_out.problems == [] and opted_out.info["overridden"] == {"init": None}


def test_the_output_folder_and_the_record_agree_under_a_protocol(tmp_path):
    overrides = ["model=roberta-base", "task=glue/rte", "+protocol=paper", "trainer.lr=1e-4"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    folder_id = outputs._run_id(_root_=cfg)
    config, seen = composed(*overrides)
    record_id = results.run_id(results.canonical(protocols.prepare(config, seen).config))
    assert folder_id == record_id
    assert folder_id != results.run_id(config)   # the protocol's values are part of the identity


def test_new_keys_left_null_keep_every_older_run_id():
    config, _ = composed("model=minilm", "task=glue/sst2")
    assert config["method"]["init_from"] is None and config["trainer"]["warmup_steps"] is None
    older = json.loads(json.dumps(config))
    del older["method"]["init_from"], older["trainer"]["warmup_steps"]
    assert results.run_id(config) == results.run_id(older)
    assert "init_from" not in results.canonical(config)["method"]
    assert compose_cfg("model=minilm").method.init_from is None


def test_the_protocol_presets_name_existing_setups():
    for preset in Path(CONF_DIR, "protocol").glob("*.yaml"):
        config, _ = composed("model=roberta-base", f"+protocol={preset.stem}")
        assert protocols.spec_problems(protocols.spec_of(config)) == []
