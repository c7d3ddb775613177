"""`harness.results.load_runs(paths) -> DataFrame`: one row per run record (folders searched recursively, files,
globs), every field a column; what could not be read is listed in `frame.attrs`, never dropped silently."""
import json

import pytest

from harness.results import load_runs


def write_record(folder, method, seed, accuracy, r=None):
    folder.mkdir(parents=True)
    method_cfg = {"name": method, **({"r": r, "targets": ["q", "v"]} if r else {})}
    record = {"run_id": f"{method}-{seed}", "status": "completed", "model": "tiny-bert", "task": "sst2",
              "method": method, "seed": seed, "experiment": "t",
              "config": {"model": {"name": "tiny-bert"}, "task": {"name": "sst2"}, "method": method_cfg, "seed": seed,
                         "trainer": {"max_train_samples": 100, "max_eval_samples": None, "lr": 1e-3}},
              "params": {"trainable": 10, "trainable_no_head": 8, "total": 100},
              "metrics": {"headline": "accuracy", "best": {"accuracy": accuracy}, "best_epoch": 1, "per_epoch": []},
              "flags": [], "output_dir": str(folder)}
    (folder / "run.json").write_text(json.dumps(record))


def test_one_row_per_run_with_flattened_columns(tmp_path):
    write_record(tmp_path / "sweep" / "a", "lora", 0, 0.81, r=8)
    write_record(tmp_path / "sweep" / "b", "lora", 1, 0.83, r=8)
    write_record(tmp_path / "sweep" / "deep" / "c", "full_ft", 0, 0.85)
    write_record(tmp_path / "elsewhere" / "d", "bitfit", 0, 0.79)
    (tmp_path / "sweep" / "broken").mkdir()
    (tmp_path / "sweep" / "broken" / "run.json").write_text("{not json")

    runs = load_runs([tmp_path / "sweep", str(tmp_path / "elsewhere" / "*" / "run.json"), tmp_path / "nothing"])
    assert len(runs) == 4 and runs["run_id"].is_unique
    assert sorted(runs["run_id"]) == ["bitfit-0", "full_ft-0", "lora-0", "lora-1"]
    by_id = runs.set_index("run_id")
    assert by_id.loc["lora-1", "metrics.best.accuracy"] == 0.83 and by_id.loc["lora-1", "config.method.r"] == 8
    assert by_id.loc["lora-0", "variant"] == "r=8 {q,v}" and by_id.loc["full_ft-0", "variant"] == ""
    assert runs.groupby("method")["metrics.best.accuracy"].median().to_dict() == pytest.approx(
        {"bitfit": 0.79, "full_ft": 0.85, "lora": 0.82})
    (problem,) = runs.attrs["problems"]
    assert problem[0].endswith("broken/run.json") and "unreadable JSON" in problem[1]
    assert runs.attrs["unmatched"] == [str(tmp_path / "nothing")]


def test_a_single_path_and_no_runs(tmp_path):
    write_record(tmp_path / "one", "lora", 0, 0.5, r=4)
    assert list(load_runs(tmp_path / "one" / "run.json")["run_id"]) == ["lora-0"]
    empty = load_runs(str(tmp_path / "none"))
    assert len(empty) == 0 and empty.attrs["unmatched"] == [str(tmp_path / "none")]


def test_files_named_in_skip_are_not_records(tmp_path):
    write_record(tmp_path / "a", "lora", 0, 0.5, r=4)
    bench = tmp_path / "latency_tiny.json"
    bench.write_text(json.dumps({"rows": []}))
    assert len(load_runs([tmp_path / "a", bench]).attrs["problems"]) == 1  # not a run record
    runs = load_runs([tmp_path / "a", bench], skip=[bench])
    assert list(runs["run_id"]) == ["lora-0"] and runs.attrs["problems"] == []


def test_run_identity_does_not_depend_on_how_the_data_folder_is_spelled(tmp_path):
    """A relaunch with `HARNESS_DATA_DIR=../shared/data` instead of its absolute path must find the completed runs."""
    from harness.results import run_id
    (tmp_path / "data").mkdir()
    (tmp_path / "sweep").mkdir()
    absolute = {"seed": 0, "task": {"name": "rte", "data_dir": str(tmp_path / "data")}}
    relative = {"seed": 0, "task": {"name": "rte", "data_dir": str(tmp_path / "sweep" / ".." / "data")}}
    other = {"seed": 0, "task": {"name": "rte", "data_dir": str(tmp_path / "sweep")}}
    assert run_id(absolute) == run_id(relative)
    assert run_id(absolute) != run_id(other)


def test_every_committed_record_keeps_its_run_id():
    """Identity is stable across versions: each committed record's config still hashes to the run_id it was saved
    under (keys added later stay out of the hash at their defaults; a relative data folder is hashed as written), so a
    relaunched sweep finds its completed runs."""
    import json
    from pathlib import Path
    from harness.results import run_id
    records = sorted(Path(__file__).resolve().parents[1].glob("reports/*/records/*/run.json"))
    assert len(records) > 200
    saved = {str(p): json.loads(p.read_text()) for p in records}
    assert [path for path, record in saved.items() if run_id(record["config"]) != record["run_id"]] == []
