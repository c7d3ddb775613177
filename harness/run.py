"""`harness-run`: compose model × task × method (+ trainer, tracker) with Hydra, train, evaluate, write run.json.

    harness-run model=minilm task=glue/sst2 method=lora trainer.max_train_samples=2000 seed=3

`main()` only composes and calls `run(cfg, output_dir)`, which tests call directly. Every run leaves a `run.json` in its
output folder; a run that did not finish says `failed` or `diverged` there, never `completed`.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import methods
from harness import results, tasks
from harness.errors import ConfigError, HarnessError
from harness.metrics import glue as glue_metrics
from harness.models import ModelInfo
from harness.tracking import NullTracker, make_tracker
from harness.train import Diverged, TrainerConfig, fit

log = logging.getLogger("harness")
FAILURES: list[tuple[str, int]] = []   # (output dir, exit code) of runs in this process that did not complete


def count_params(model, info: ModelInfo) -> dict:
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    return {
        "trainable": sum(trainable.values()),
        "trainable_no_head": sum(v for n, v in trainable.items() if not info.is_head(n)),
        "total": sum(p.numel() for p in model.parameters()),
    }


def validate_task(task: dict) -> None:
    for key in ("name", "family", "splits", "metrics", "headline"):
        if key not in task:
            raise ConfigError(f"task.{key} is missing from the task config")
    if task["headline"] not in task["metrics"]:
        raise ConfigError(f"task.headline={task['headline']!r} is not among task.metrics {list(task['metrics'])}")
    unknown = [m for m in task["metrics"] if m not in glue_metrics.METRICS]
    if task["family"] == "glue" and unknown:
        raise ConfigError(f"task.metrics has unknown metric {unknown[0]!r}; valid choices: {', '.join(glue_metrics.METRICS)}")


def run(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train and evaluate one configuration; returns the run record (also written to `output_dir/run.json`)."""
    output_dir = Path(output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    record = results.new_record(config, output_dir)
    record_path = output_dir / "run.json"
    tracker = NullTracker()
    try:
        # Validate everything cheap before loading any model: fail at start-up, not after an hour of training.
        tcfg = TrainerConfig(**config["trainer"])
        method, mcfg = methods.build(config["method"])
        task = config["task"]
        validate_task(task)
        info = ModelInfo.from_cfg(config["model"])
        output_dir.mkdir(parents=True, exist_ok=True)
        results.write_json_atomic(record_path, record)

        pipeline = tasks.build(task, config["model"], tcfg)
        torch.manual_seed(config["seed"])  # the task head's initialisation draws from torch's RNG
        model = method.apply(pipeline.build_model(), mcfg, info)
        for name, p in model.named_parameters():  # every method trains the task head
            if info.is_head(name):
                p.requires_grad_(True)
        record["params"] = count_params(model, info)
        log.info("params: %s", record["params"])

        tracker = make_tracker(config["tracker"], config=config, output_dir=output_dir,
                               name=f"{task['name']}-{method.name}-s{config['seed']}", job_type=method.name,
                               tags=[info.name, task["name"], method.name])
        record["tracking"] = {"wandb_dir": tracker.run_dir}

        def evaluate(m):
            with method.evaluating(m, mcfg):
                return pipeline.evaluate(m)

        result = fit(model, pipeline.train, tcfg, collate=pipeline.collate, evaluate=evaluate, headline=task["headline"],
                     tracker=tracker, seed=config["seed"], loss_fn=pipeline.loss_fn)
        record["metrics"] = {"headline": task["headline"], "best": result.best, "best_epoch": result.best_epoch,
                             "per_epoch": result.per_epoch,
                             "final": {k: v for k, v in result.per_epoch[-1].items() if k not in ("epoch", "step")}}
        record["cost"] = result.cost
        record["provenance"] = results.provenance(pipeline.provenance, result.cost["device"])
        if pipeline.after_run:
            pipeline.after_run(model, output_dir, record)
        if method.save:
            method.save(model, mcfg, info, output_dir / "adapter")
        record["status"] = "completed"
        tracker.summary({"status": "completed", "headline": task["headline"], "best_epoch": result.best_epoch,
                         **{f"best/{k}": v for k, v in result.best.items()},
                         **{f"params/{k}": v for k, v in record["params"].items()},
                         **{f"cost/{k}": v for k, v in result.cost.items() if isinstance(v, (int, float))}})
    except Diverged as exc:
        record["status"], record["error"] = "diverged", results.error_info(exc)
    except BaseException as exc:
        record["status"], record["error"] = "failed", results.error_info(exc)
        raise
    finally:
        record["finished_at"] = results.now()
        if record["status"] != "completed":
            tracker.summary({"status": record["status"], "error": (record["error"] or {}).get("message")})
        tracker.finish(ok=record["status"] == "completed")
        if output_dir.exists():
            results.write_json_atomic(record_path, record)
    return record


def print_summary(record: dict) -> None:
    out = Path(record["output_dir"])
    if record["status"] == "completed":
        m = record["metrics"]
        print(f"\n{record['task']} / {record['method']} / {record['model']} (seed {record['seed']}): best epoch {m['best_epoch']}")
        for key, value in m["best"].items():
            print(f"  dev {key:<24} {value:.4f}")
        p = record["params"]
        print(f"  trainable params: {p['trainable']:,} ({p['trainable_no_head']:,} without the head) of {p['total']:,}")
    else:
        print(f"\nrun {record['status']}: {(record['error'] or {}).get('message')}")
    print(f"  run record: {out / 'run.json'}")
    if (record.get("tracking") or {}).get("wandb_dir"):
        print(f"  W&B run:    {record['tracking']['wandb_dir']}  (upload later with `wandb sync`)")


CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        record = run(cfg, output_dir)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        FAILURES.append((str(output_dir), 2))
        return
    except Exception as exc:  # recorded in run.json; a multirun goes on with the next config
        log.exception("run failed: %s", exc)
        FAILURES.append((str(output_dir), 1))
        return
    print_summary(record)
    if record["status"] != "completed":
        FAILURES.append((str(output_dir), 1))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    _hydra_main()
    if FAILURES:
        if len(FAILURES) > 1 or "-m" in sys.argv or "--multirun" in sys.argv:
            print(f"{len(FAILURES)} run(s) did not complete:", *(f"  {d}" for d, _ in FAILURES), sep="\n", file=sys.stderr)
        sys.exit(max(code for _, code in FAILURES))


if __name__ == "__main__":
    main()
