"""Start-up validation: the composed config is checked before any data or model is loaded, and every problem found is
reported at once, one line each, naming the key or path and the valid choices (exit code 2, no `completed` record).

    trainer        known keys; ranges (lr > 0, batch ≥ 1, warmup in [0, 1), ...); precision and device choices
    method         name, known keys; ranges live in each method's Config.__post_init__ (r > 0, 0 ≤ dropout < 1, ...),
                   method.budget > 0 in methods.build
    task, model    required keys, headline among metrics, known metrics and family; model source, installed package
    top level      seed ≥ 0, skip_completed and resume booleans; tracker name and mode
    data           the task family's `check_data(task)` (GLUE: each split's file is present and not empty)
    output         the output folder can be created and written to
    method × model the method is applied to a weightless skeleton of the model (`AutoModel.from_config` under the meta
                   device: no weights are read), so LoRA targets that match no module, or a method that does not support
                   the architecture, fail here and not after data and weights have loaded. Only a ConfigError from the
                   skeleton counts; a skeleton that cannot be built (a hub model outside the local cache, offline) is
                   skipped, and the method's real application after loading, before training, catches what is left.
"""
from __future__ import annotations

import copy
import importlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import methods
from harness import tasks
from harness.errors import ConfigError, HarnessError, unknown_choice
from harness.metrics import glue as glue_metrics
from harness.models import ModelInfo, package_dir, pooling_of
from harness.train.config import TrainerConfig, trainer_config

log = logging.getLogger(__name__)
MODEL_KEYS = ("name", "arch", "source", "weight_types", "layer_pattern", "num_layers", "d_model")
SOURCES = {"package": ("package",), "hub": ("hub_id",), "tiny": ("config", "tokenizer"), "gguf": ("package", "gguf_file")}
TRACKERS = {"wandb": ("offline", "online", "disabled"), "none": ()}


class ValidationError(ConfigError):
    """All the problems found at start-up; `str()` is one problem per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Checked:
    tcfg: TrainerConfig
    method: methods.Method
    mcfg: object
    info: ModelInfo


def check_task(task: dict) -> None:
    for key in ("name", "family", "splits", "metrics", "headline"):
        if key not in task:
            raise ConfigError(f"task.{key} is missing from the task config")
    if task["family"] not in tasks.FAMILIES:
        raise unknown_choice("task.family", task["family"], tasks.FAMILIES)
    if task["headline"] not in task["metrics"]:
        raise ConfigError(f"task.headline={task['headline']!r} is not among task.metrics {list(task['metrics'])}")
    unknown = [m for m in task["metrics"] if m not in glue_metrics.METRICS]
    if task["family"] == "glue" and unknown:
        raise ConfigError(f"task.metrics has unknown metric {unknown[0]!r}; valid choices: {', '.join(glue_metrics.METRICS)}")
    splits = task["splits"]
    if not isinstance(splits, dict) or not splits.get("train") or not splits.get("eval"):
        raise ConfigError(f"task.splits needs a `train` split and a non-empty `eval` list, got {splits!r}")


def check_model(model: dict) -> ModelInfo:
    missing = [k for k in MODEL_KEYS if model.get(k) is None]
    if missing:
        raise ConfigError(f"model.{missing[0]} is missing from the model config (model {model.get('name')!r})")
    source = model["source"]
    if source not in SOURCES:
        raise unknown_choice("model.source", source, SOURCES)
    missing = [k for k in SOURCES[source] if not model.get(k)]
    if missing:
        raise ConfigError(f"model.{missing[0]} is needed with model.source={source}")
    pooling_of(model)
    if source == "package":
        package_dir(model["package"], model.get("subdir", ""))
    if source == "tiny":
        package_dir(model["tokenizer"]["package"], model["tokenizer"].get("subdir", ""))
    if source == "gguf":  # a GGUF file inside an installed package (causal LMs: harness/causal_lm.py)
        from harness.causal_lm import gguf_path

        gguf_path(model)
    return ModelInfo.from_cfg(model)


def check_top_level(config: dict) -> None:
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer ≥ 0, got {seed!r}")
    for key in ("skip_completed", "resume"):
        if not isinstance(config.get(key, False), bool):
            raise ConfigError(f"{key} must be true or false, got {config[key]!r}")


def check_tracker(tracker: dict) -> None:
    name = tracker.get("name", "none")
    if name not in TRACKERS:
        raise unknown_choice("tracker.name", name, TRACKERS)
    mode = tracker.get("mode", "offline")
    if TRACKERS[name] and mode not in TRACKERS[name]:
        raise ConfigError(f"tracker.mode={mode!r} is not valid; valid choices: {', '.join(TRACKERS[name])}")


def check_data(task: dict) -> list[str]:
    """The family's own check (it knows its file names); otherwise that `task.data_dir`, when set, is a folder."""
    module = importlib.import_module(tasks.FAMILIES[task["family"]])
    if hasattr(module, "check_data"):
        return list(module.check_data(task))
    data_dir = task.get("data_dir")
    if data_dir and not Path(data_dir).is_dir():
        return [f"task.data_dir={data_dir} is not a folder (set HARNESS_DATA_DIR or task.data_dir)"]
    return []


def check_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as exc:
        raise ConfigError(f"output folder {output_dir} is not writable ({exc.strerror or exc}); "
                          "set hydra.run.dir / hydra.sweep.dir to a writable folder") from None


def skeleton(model: dict):
    """The model's modules with no weights (meta device), or None when its config cannot be had without the network."""
    import torch
    from transformers import AutoConfig, AutoModel

    if model["source"] == "tiny":
        cfg = dict(model["config"])
        config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    else:
        path = (str(package_dir(model["package"], model.get("subdir", ""))) if model["source"] == "package"
                else model["hub_id"])
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            log.info("model/method check deferred until the model loads (no local config for %s: %s)", path, exc)
            return None
    with torch.device("meta"):
        return AutoModel.from_config(config)


def check_method_on_model(method, mcfg, info: ModelInfo, model: dict) -> None:
    import torch

    try:
        net = skeleton(model)
        if net is not None:
            with torch.device("meta"):
                method.apply(net, copy.deepcopy(mcfg), info)  # a copy: method.budget writes its size into the config
    except HarnessError:
        raise
    except Exception as exc:  # not a config problem the skeleton can prove; the real apply will tell
        log.debug("method %s on a skeleton of %s: %s: %s", method.name, info.name, type(exc).__name__, exc)


def check(config: dict, output_dir: str | Path) -> Checked:
    """Every start-up check; raises ValidationError listing all problems, or returns what the run needs."""
    problems: list[str] = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except HarnessError as exc:
            problems.append(str(exc))
        except (KeyError, TypeError, ValueError) as exc:  # a malformed group, e.g. a list where a mapping belongs
            problems.append(f"{fn.__name__.removeprefix('check_')}: malformed config ({type(exc).__name__}: {exc})")
        return None

    tcfg = attempt(trainer_config, dict(config.get("trainer") or {}))
    built = attempt(methods.build, dict(config.get("method") or {}))
    before = len(problems)
    attempt(check_task, config.get("task") or {})
    task_ok = len(problems) == before
    info = attempt(check_model, config.get("model") or {})
    attempt(check_top_level, config)
    attempt(check_tracker, config.get("tracker") or {})
    if task_ok:  # the task config is sound: its data can be looked for
        problems += attempt(check_data, config["task"]) or []
    attempt(check_output_dir, Path(output_dir))
    if built and info and not problems:
        attempt(check_method_on_model, *built, info, config["model"])
    if problems:
        raise ValidationError(problems)
    return Checked(tcfg, built[0], built[1], info)
