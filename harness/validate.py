"""Start-up validation: the composed config is checked before any data or model is loaded, and every problem found is
reported at once, one line each, naming the key or path and the valid choices (exit code 2, no `completed` record).

    trainer        known keys; ranges (lr > 0, batch ≥ 1, warmup in [0, 1), ...): harness/train/config.py
    method         name, known keys; ranges live in each method's Config.__post_init__ (r > 0, 0 ≤ dropout < 1, ...),
                   method.budget > 0 in methods.build
    task           a TaskConfig (harness/tasks/config.py): kind, dataset module, splits, metrics, headline, prompt,
                   the dataset's own keys
    model          the source resolver's check (harness/models/source.py): source keys, installed package, GGUF file
    top level      seed ≥ 0, skip_completed and resume booleans; tracker name and mode
    data           the dataset module's `check_data(task)` (GLUE: each split's file is present and not empty)
    output         the output folder can be created and written to
    init_from      a completed run's folder with its best.safetensors, trained with the same model and method settings
    method × model the method is applied to a weightless skeleton of the model the task will build (meta device: no
                   weights are read; its config comes from the package folder, the tiny mapping, the GGUF file's
                   metadata or the local hub cache), so LoRA targets that match no module, or a method that does not
                   support the architecture, fail here and not after data and weights have loaded. Only a ConfigError
                   from the skeleton counts; a hub model outside the local cache is checked when it loads.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import methods
from harness import results, tasks
from harness.errors import ConfigError, HarnessError, unknown_choice
from harness.models import source
from harness.models.classifier import pooling_of
from harness.models.info import ModelInfo
from harness.tasks.config import TaskConfig, dataset_module, task_config
from harness.train.checkpoint import BEST_FILE
from harness.train.config import TrainerConfig, trainer_config

log = logging.getLogger(__name__)
MODEL_KEYS = ("name", "arch", "source", "weight_types", "layer_pattern")
TRACKERS = {"wandb": ("offline", "online", "disabled"), "none": ()}


class ValidationError(ConfigError):
    """All the problems found at start-up; `str()` is one problem per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Checked:
    trainer: TrainerConfig
    method: methods.Method
    method_cfg: object             # the method's Config (its size not yet fitted to a budget)
    task: TaskConfig


def check_model(model: dict) -> None:
    missing = [k for k in MODEL_KEYS if model.get(k) is None]
    if missing:
        raise ConfigError(f"model.{missing[0]} is missing from the model config (model {model.get('name')!r})")
    source.check(model)
    pooling_of(model)


def check_top_level(config: dict) -> None:
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    for key in ("skip_completed", "resume", "rerun", "overwrite"):
        if not isinstance(config.get(key, False), bool):
            raise ConfigError(f"{key} must be true or false, got {config[key]!r}")


def check_tracker(tracker: dict) -> None:
    name = tracker.get("name", "none")
    if name not in TRACKERS:
        raise unknown_choice("tracker.name", name, TRACKERS)
    mode = tracker.get("mode", "offline")
    if TRACKERS[name] and mode not in TRACKERS[name]:
        raise ConfigError(f"tracker.mode={mode!r} is not valid; valid choices: {', '.join(TRACKERS[name])}")


def check_data(task: TaskConfig) -> list[str]:
    """The dataset module's own check (it knows its file names); else that `task.data_dir`, when set, is a folder."""
    module = dataset_module(task.dataset)
    found = list(module.check_data(task)) if hasattr(module, "check_data") else []
    if not found and task.data_dir and not Path(task.data_dir).is_dir():
        return [f"task.data_dir={task.data_dir} is not a folder (set HARNESS_DATA_DIR or task.data_dir)"]
    return found


def _unwritable(folder: Path) -> str | None:
    """Why `folder` cannot be made and written (it is made if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def check_cache_dir(trainer: TrainerConfig) -> None:
    """trainer.cache_dir (tokenised data, converted models) is a folder that can be made and written."""
    why = trainer and trainer.cache_dir and _unwritable(Path(trainer.cache_dir))
    if why:
        raise ConfigError(f"trainer.cache_dir={trainer.cache_dir} is not a writable folder ({why}); "
                          "set it (or HARNESS_CACHE_DIR) to one")


def check_output_dir(output_dir: Path) -> None:
    why = _unwritable(output_dir)
    if why:
        raise ConfigError(f"output folder {output_dir} is not writable ({why}); "
                          "set hydra.run.dir / hydra.sweep.dir to a writable folder")


def check_init_from(config: dict) -> None:
    """`init_from`: a completed run's folder holding its trained parameters, made with this run's model and method
    settings (everything but the learning rate and the display keys); the exact key set is checked when they load."""
    folder = config.get("init_from")
    if folder is None:
        return
    record = results.read_record(Path(folder) / "run.json")
    if not record or record.get("status") != "completed" or not (Path(folder) / BEST_FILE).is_file():
        raise ConfigError(f"init_from={folder} is not a completed run's folder (run.json with status completed and "
                          f"{BEST_FILE}); valid: the output folder of a completed run")
    theirs, mine = record.get("config") or {}, config
    if (theirs.get("model") or {}).get("name") != (mine.get("model") or {}).get("name"):
        raise ConfigError(f"init_from={folder} trained model {record.get('model')}, this run model "
                          f"{(mine.get('model') or {}).get('name')}; valid: a run of the same model")
    skip = methods.COMMON_KEYS - {"name"}
    method_a, method_b = theirs.get("method") or {}, mine.get("method") or {}
    for key in sorted((set(method_a) | set(method_b)) - skip):
        if method_a.get(key) != method_b.get(key):
            raise ConfigError(f"init_from={folder} trained with method.{key}={method_a.get(key)!r}, this run has "
                              f"method.{key}={method_b.get(key)!r}; valid: the same method settings")


def positions(hf_config) -> int | None:
    """The input positions a model can read: `max_position_embeddings` (`n_positions` for GPT-2), less RoBERTa's
    offset (its position ids start after the padding id)."""
    limit = getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "n_positions", None)
    if limit and getattr(hf_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= (getattr(hf_config, "pad_token_id", 0) or 0) + 1
    return limit


def check_lengths(trainer: TrainerConfig, net, model: dict) -> None:
    """trainer.max_seq_len within the model's positions, and a prefix that leaves room for text."""
    from methods.prefix import prefix_positions

    limit = positions(net.config)
    if limit and trainer.max_seq_len > limit:
        raise ConfigError(f"trainer.max_seq_len={trainer.max_seq_len} exceeds the {limit} positions of model "
                          f"{model['name']}; valid: 8 … {limit}")
    taken = prefix_positions(net)
    if limit and taken >= limit:
        raise ConfigError(f"method.l_p + method.l_i = {taken} take all {limit} positions of model {model['name']}; "
                          f"valid: fewer than {limit}")


def check_trains_something(net, info: ModelInfo, method_name: str) -> None:
    """A method that leaves nothing to train outside the task head trains the head alone (or nothing, and fails at
    the first backward): refused, with why (BitFit on a model without bias terms, as Llama)."""
    if not info.count_params(net)["trainable_no_head"]:
        why = " (it has no bias terms)" if method_name == "bitfit" else ""
        raise ConfigError(f"method {method_name} trains no parameter of model {info.name} outside the task head{why}; "
                          "choose another method for this model")


def check_method_on_model(method, method_cfg, task: TaskConfig, model: dict, trainer: TrainerConfig) -> None:
    """Apply the method to a weightless skeleton of the model the task builds (budget fitted first, as the run will),
    and check the lengths against the model's positions."""
    import torch

    try:
        net = tasks.pipeline_module(task).model_skeleton(task, model, trainer.cache_dir)
        if net is None:
            return
        info = ModelInfo.from_cfg(model, net.config)
        with torch.device("meta"):
            net = method.apply(net, method.sized(method_cfg, info, net), info)
        check_lengths(trainer, net, model)
        check_trains_something(net, info, method.name)
    except HarnessError:
        raise
    except Exception as exc:  # not a config problem the skeleton can prove; the real apply will tell
        log.debug("method %s on a skeleton of %s: %s: %s", method.name, model.get("name"), type(exc).__name__, exc)


def check(config: dict, output_dir: str | Path) -> Checked:
    """Every start-up check; raises ValidationError listing all problems, or returns what the run needs."""
    problems: list[str] = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except HarnessError as exc:
            problems.append(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a malformed group, e.g. a list for a map
            problems.append(f"{fn.__name__.removeprefix('check_')}: malformed config ({type(exc).__name__}: {exc})")
        return None

    trainer = attempt(trainer_config, dict(config.get("trainer") or {}))
    built = attempt(methods.build, dict(config.get("method") or {}))
    task = attempt(task_config, dict(config.get("task") or {}))
    before = len(problems)
    attempt(check_model, config.get("model") or {})
    model_ok = len(problems) == before
    attempt(check_top_level, config)
    attempt(check_tracker, config.get("tracker") or {})
    if task:  # the task config is sound: its data can be looked for
        problems += attempt(check_data, task) or []
    attempt(check_output_dir, Path(output_dir))
    attempt(check_init_from, config)
    attempt(check_cache_dir, trainer)
    if built and task and model_ok and not problems:
        attempt(check_method_on_model, *built, task, config["model"], trainer)
    if problems:
        raise ValidationError(problems)
    return Checked(trainer, built[0], built[1], task)
