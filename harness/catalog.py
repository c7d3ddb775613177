"""The shipped config folder (`harness/conf/`, package data) read without Hydra: what reports, benchmarks and checks
need to know about a method, a task or a model by name, from the one place it is written — its yaml.

    method_meta("lora")  → {"label": "LoRA", "order": 10, ...}    (conf/method/lora.yaml)
    task_meta("sst2")    → {"label": "SST-2", "headline": "accuracy", "report": {...}, ...}   (conf/task/**/sst2.yaml)
    model_label("smollm2") → "SmolLM2"                              (conf/model/smollm2.yaml)
    model_yaml("minilm") → the model yaml composed with its architecture map (conf/model/arch/bert.yaml)

Nothing here imports torch, so reading run records stays cheap.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent / "conf"
UNKNOWN_ORDER = 1000   # methods or tasks without an `order` go after the known ones


@lru_cache(maxsize=None)
def _load(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def method_meta(name: str) -> dict:
    """A method's yaml (label, order, recommended lr, defaults); {} for a name with no yaml."""
    path = CONF_DIR / "method" / f"{name}.yaml"
    return _load(path) if path.is_file() else {}


def method_label(name: str) -> str:
    return str(method_meta(name).get("label") or name)


def method_order(name: str) -> tuple:
    return (method_meta(name).get("order", UNKNOWN_ORDER), name)


@lru_cache(maxsize=None)
def _task_paths() -> dict[str, Path]:
    """Task name (the yaml's `name`) → its yaml, for every task shipped in conf/task/ (sub-folders included)."""
    found = {}
    for path in sorted((CONF_DIR / "task").rglob("*.yaml")):
        found.setdefault(str(_load(path).get("name") or path.stem), path)
    return found


def task_meta(name: str) -> dict:
    """A shipped task's yaml (label, kind, dataset, headline, report layout); {} for a task not shipped here."""
    path = _task_paths().get(name)
    return _load(path) if path else {}


def task_names() -> list[str]:
    return sorted(_task_paths())


def task_choices() -> list[str]:
    """The `task=` choices: yaml paths under conf/task/ without the suffix (glue/sst2, e2e)."""
    root = CONF_DIR / "task"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def choices(group: str) -> list[str]:
    """The option names of a flat config group (model, method, trainer, tracker, experiment, sweep)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def model_label(name: str) -> str:
    """How reports name a model (its yaml's `label`: SmolLM2), else its name."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    return str((_load(path) if path.is_file() else {}).get("label") or name)


def model_yaml(name: str) -> dict | None:
    """A model yaml composed as Hydra composes it: its architecture map (`defaults: [arch@_here_: NAME]`) first,
    then the model's own keys over it. None when there is no such model."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        return None
    own = dict(_load(path))
    merged: dict = {}
    for entry in own.pop("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.startswith("arch"):
                    merged.update(_load(CONF_DIR / "model" / "arch" / f"{value}.yaml"))
    merged.update(own)
    return OmegaConf.to_container(OmegaConf.create(merged), resolve=True)
