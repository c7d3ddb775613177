"""Bad data files and bad command lines: each ends in one line naming the file (and line) or the option, with what is
valid, exit code 2 (a HarnessError at run(), which `harness-run` turns into exit 2: tests/test_validation.py), a
`failed` record, and no model loaded. The config-level table is tests/test_validation.py's BAD_INPUTS."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

import harness.tasks.classification
import harness.tasks.generation
from harness.errors import HarnessError
from harness.runner import run
from tests.conftest import REPO, compose_cfg, write_glue_fixture
from tests.test_generation import FAST, write_e2e_fixture, write_wikisql_fixture


def _no_model(*args, **kwargs):
    raise AssertionError("a model was loaded before the data was checked")


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    monkeypatch.setattr(harness.tasks.classification, "load_classifier", _no_model)
    monkeypatch.setattr(harness.tasks.generation, "load_causal_lm", _no_model)


def _glue(root, mutate):
    data = write_glue_fixture(root)
    mutate(data / "glue" / "SST-2")
    return ["model=tiny-bert", "task=glue/sst2", f"task.data_dir={data}"]


def _e2e(root, mutate):
    data = write_e2e_fixture(root)
    mutate(data / "e2e_nlg" / "csv" / "trainset.csv")
    return ["model=tiny-gpt2", "task=e2e", f"task.data_dir={data}", *FAST]


def _wikisql(root, mutate):
    data = write_wikisql_fixture(root)
    mutate(data / "wikisql" / "train.jsonl")
    return ["model=tiny-gpt2", "task=wikisql", f"task.data_dir={data}", *FAST]


def _rewrite_first_question(path, change):
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    change(first)
    path.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")


CASES = {
    "gzip-garbage": (_glue, lambda d: (d / "train.tsv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 20),
                     "train.tsv.gz: corrupt or truncated gzip file"),
    "gzip-truncated": (_glue, lambda d: (d / "train.tsv.gz").write_bytes((d / "train.tsv.gz").read_bytes()[:40]),
                       "train.tsv.gz: corrupt or truncated gzip file"),
    "not-utf8": (_glue, lambda d: (d / "dev.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9 au lait\t1\n"),
                 "dev.tsv:2: not UTF-8 text (byte 0xe9 at column 4)"),
    "binary": (_glue, lambda d: (d / "dev.tsv").write_bytes(bytes(range(256)) * 4), "dev.tsv:2: not UTF-8 text"),
    "malformed-line": (_glue, lambda d: (d / "dev.tsv").write_text("sentence\tlabel\na film\t1\tthree\n"),
                       "dev.tsv:2: malformed line: expected 2 tab-separated fields, got 3"),
    "unknown-label": (_glue, lambda d: (d / "dev.tsv").write_text("sentence\tlabel\na film\tpositive\n"),
                      "dev.tsv:2: unknown label 'positive'; valid labels: ['0', '1']"),
    "e2e-not-utf8": (_e2e, lambda p: p.write_bytes(b"mr,ref\nname[Caf\xe9],ok\n"), "trainset.csv:2: not UTF-8 text"),
    "e2e-columns": (_e2e, lambda p: p.write_text("meaning,text\na,b\n"), "trainset.csv: missing column(s) ['mr', 'ref']"),
    "e2e-empty-ref": (_e2e, lambda p: p.write_text("mr,ref\nname[X],\n"),
                      "trainset.csv: 1 row(s) with an empty MR or no reference, at line(s) 2"),
    "wikisql-json": (_wikisql, lambda p: p.write_text("{not json\n"), "train.jsonl:1: not valid JSON"),
    "wikisql-sel": (_wikisql, lambda p: _rewrite_first_question(p, lambda q: q["sql"].update(sel=42)),
                    "sql.sel=42 is not a column index of its table"),
    "wikisql-op": (_wikisql, lambda p: _rewrite_first_question(p, lambda q: q["sql"].update(conds=[[0, 9, "x"]])),
                   "sql.conds entry [0, 9, 'x'] is not [column index, operator index 0 … 3, value]"),
    "wikisql-table": (_wikisql, lambda p: _rewrite_first_question(p, lambda q: q.update(table_id="1-nope")),
                      "table '1-nope'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_is_named_with_its_file_and_line(case, tmp_path):
    build, mutate, expected = CASES[case]
    overrides = build(tmp_path / "data", mutate)
    cfg = compose_cfg(*overrides, "tracker=none", "trainer.progress=false", f"trainer.cache_dir={tmp_path / 'c'}")
    with pytest.raises(HarnessError) as caught:
        run(cfg, tmp_path / "out")
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,expected", [
    (["harness.report", "/nonexistent/records", "--out", "OUT"], "no run.json found under /nonexistent/records"),
    (["harness.score", "e2e", "/nonexistent/gen.txt", "/nonexistent/ref.txt"], "file not found: /nonexistent/gen.txt"),
    (["harness.bench", "train", "--model", "nope"], "--model 'nope': no harness/conf/model/nope.yaml"),
    (["harness.bench", "latency", "--model", "nope"], "--model 'nope': no harness/conf/model/nope.yaml"),
    (["harness.bench", "latency", "--model", "tiny-bert", "--grid", "0x5"], "--grid: batch and seq must be > 0"),
    (["harness.bench", "frobnicate"], "harness-bench"),
    (["harness.run", "trainer.epoch=2"], "trainer.epoch is not a setting. Did you mean trainer.epochs?"),
    (["harness.run", "method=lora", "method.rank=4"], "method.rank is not a setting. Valid keys under method:"),
    (["harness.run", "hydra.run.dir=FILE/out"], "hydra.run.dir=FILE/out: FILE is not a writable folder"),
    (["harness.run", "task=sst2"], "Did you mean glue/sst2?"),
])
def test_bad_command_lines_exit_2_with_one_line(args, expected, tmp_path):
    (tmp_path / "a_file").write_text("")
    places = {"OUT": str(tmp_path / "out"), "FILE": str(tmp_path / "a_file")}

    def place(text):
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    proc = _cli(*map(place, args))
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert place(expected) in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error")]) <= 1
