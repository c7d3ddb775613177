"""--wandb: runs read back through wandb.Api() (replaced by recorded responses: no W&B server is reachable here)."""
import pandas as pd
import pytest
import wandb

from harness import report


class FakeSummary:
    """Like wandb's HTTPSummary: keys() / items() / [] but not a dict, nested values the same kind."""

    def __init__(self, data):
        self._data = data

    def items(self):
        return [(k, FakeSummary(v) if isinstance(v, dict) else v) for k, v in self._data.items()]


class FakeRun:
    def __init__(self, name, config, summary, state="finished", group="glue_table2"):
        self.name, self.config, self.summary, self.state = name, config, FakeSummary(summary), state
        self.group, self.job_type, self.tags = group, "train", ["test"]

    def scan_history(self, keys):
        """Rows as the harness logs them: eval/<metric> with the epoch; only rows holding every key in `keys`."""
        best = self.summary._data.get("best/accuracy")
        rows = [{"epoch": e, "eval/accuracy": best - 0.01 * (3 - e)} for e in (1, 2, 3)] if best else []
        return [row for row in rows if all(k in row for k in keys)]


def config(task, method, seed, r=None):
    method_cfg = {"name": method, "budget": None, **({"r": r, "targets": ["q", "v"]} if r else {})}
    return {"model": {"name": "roberta-base"}, "task": {"name": task, "family": "glue"}, "method": method_cfg,
            "trainer": {"max_train_samples": None, "lr": 5e-4}, "seed": seed, "experiment": "glue_table2",
            "_wandb": {"cli_version": "0.17"}}


def summary(accuracy, seed, **extra):
    return {"status": "completed", "run_id": f"lora-sst2-{seed}", "headline": "accuracy", "best_epoch": 3,
            "best/accuracy": accuracy, "best/loss": 0.2, "params/trainable": 296_450,
            "params/trainable_no_head": 294_912, "params/total": 125_000_000, "cost/train_seconds": 12.5, **extra}


RECORDED = [
    FakeRun("run-a", config("sst2", "lora", 0, r=8), summary(0.951, 0)),
    FakeRun("run-b", config("sst2", "lora", 1, r=8), summary(0.949, 1)),
    # The best metrics logged as one nested dict instead of slash keys: the same record comes out.
    FakeRun("run-c", config("sst2", "lora", 2, r=8), {**{k: v for k, v in summary(0.953, 2).items()
                                                         if k != "best/accuracy"}, "best": {"accuracy": 0.953}}),
    # No harness status in the summary (killed before the end): the W&B state decides.
    FakeRun("run-d", config("sst2", "lora", 3, r=8), {"best/accuracy": 0.5}, state="crashed"),
    FakeRun("sweep-controller", {}, {}, group=None),
]


@pytest.fixture
def fake_api(monkeypatch):
    calls = []

    class Api:
        def runs(self, path):
            calls.append(path)
            return list(RECORDED)

    monkeypatch.setattr(wandb, "Api", Api)
    return calls


def test_conversion_gives_the_run_json_shape():
    record = report.wandb_run_to_record(RECORDED[0], "ent/proj")
    assert (record["model"], record["task"], record["method"], record["seed"]) == ("roberta-base", "sst2", "lora", 0)
    assert record["status"] == "completed" and record["run_id"] == "lora-sst2-0"
    assert record["metrics"]["best"] == {"accuracy": 0.951, "loss": 0.2}
    assert record["metrics"]["headline"] == "accuracy" and record["metrics"]["best_epoch"] == 3
    assert record["params"] == {"trainable": 296_450, "trainable_no_head": 294_912, "total": 125_000_000}
    assert record["cost"] == {"train_seconds": 12.5}
    assert record["experiment"] == "glue_table2" and "_wandb" not in record["config"]
    assert record["config"]["method"]["r"] == 8
    assert record["provenance"]["wandb"] == {"name": "run-a", "job_type": "train", "tags": ["test"],
                                             "state": "finished"}
    nested = report.wandb_run_to_record(RECORDED[2], "ent/proj")
    assert nested["metrics"]["best"] == {"accuracy": 0.953, "loss": 0.2}
    assert report.wandb_run_to_record(RECORDED[3], "ent/proj")["status"] == "failed"
    assert [row["epoch"] for row in record["metrics"]["per_epoch"]] == [1, 2, 3]
    assert record["metrics"]["per_epoch"][0]["accuracy"] == pytest.approx(0.931)


def test_cli_reads_wandb(fake_api, tmp_path):
    assert report.main(["--wandb", "ent/proj", "--out", str(tmp_path), "--formats", "md,csv"]) == 0
    assert fake_api == ["ent/proj"]
    csv = pd.read_csv(tmp_path / "table2_glue.csv")
    assert csv["median"].tolist() == [pytest.approx(0.951)] and csv["n"].tolist() == [3]
    index = (tmp_path / "README.md").read_text()
    assert "**95.1** ±0.2" in index
    assert "| failed | roberta-base | sst2 | lora | r=8 {q,v} | 3 |" in index
    assert "wandb:ent/proj/sweep-controller | not a harness run: missing model, task, method" in index
    assert (tmp_path / "plots" / "learning_curves_sst2.png").stat().st_size > 1000
    card = pd.read_csv(tmp_path / "scorecard.csv", keep_default_na=False)
    assert card.loc[card.paper_model == "RoB-base", "comparable"].tolist() == ["yes"]
