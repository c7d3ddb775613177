"""Command-line checks `harness-run` makes before Hydra composes anything, so that a mistake on the command line is
one line naming it and what is valid (exit code 2), never Hydra's traceback: a group choice that does not exist
(`task=sst2` → glue/sst2), a key that is no setting (`trainer.epoch=2` → epochs), an output folder that cannot be made."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness import catalog
from harness.errors import unknown_choice

# Chosen as group=choice.
GROUPS = ("model", "task", "method", "trainer", "tracker", "experiment", "sweep", "protocol")
OTHER_CONFIG = ("--config-dir", "-cd", "--config-path", "-cp", "hydra.searchpath")  # choices we cannot list


def _assignments(argv: list[str]):
    """(key, value) of every `key=value` argument, `+`/`~` prefixes kept on the key."""
    return [tuple(arg.split("=", 1)) for arg in argv if "=" in arg and not arg.startswith("-")]


def unknown_group_choice(argv: list[str]) -> str | None:
    """The first `group=choice` on the command line whose choice does not exist (`task=sst2`), as one error line that
    suggests the closest choices (`glue/sst2`) and lists all of them, nested ones included (Hydra's own message
    lists only the top folder's); None when every choice exists or the command adds config folders of its own."""
    if any(arg.startswith(OTHER_CONFIG) for arg in argv):
        return None
    for key, value in _assignments(argv):
        key = key.lstrip("+")
        if key not in GROUPS or "(" in value:  # sweep functions: choice(...), range(...)
            continue
        choices = catalog.task_choices() if key == "task" else catalog.choices(key)
        for choice in value.split(","):
            if choice not in choices and choice != "null":
                return f"Could not find '{key}/{choice}': {unknown_choice(key, choice, choices)}"
    return None


def _composed(argv: list[str]) -> DictConfig:
    """The config the command's group choices compose (the first of a sweep's choices), without its other keys."""
    from hydra import compose, initialize_config_dir

    choices = [f"{k}={v.split(',')[0]}" for k, v in _assignments(argv) if k.lstrip("+") in GROUPS and "(" not in v]
    with initialize_config_dir(config_dir=str(catalog.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=choices)


def unknown_key(argv: list[str]) -> str | None:
    """The first `a.b=value` that names no setting of the composed config (`trainer.epoch=2`), as one line with the
    closest keys and every valid one; a new key is added with `+a.b=value`, as Hydra has it."""
    keys = [k for k, _ in _assignments(argv)
            if not k.startswith(("+", "~", "hydra")) and k not in GROUPS and "/" not in k]  # hydra/launcher=…: a group
    if not keys or any(arg.startswith(OTHER_CONFIG) for arg in argv):
        return None
    cfg = _composed(argv)
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if isinstance(node, DictConfig) and leaf in node:
            continue
        valid = sorted(node.keys()) if isinstance(node, DictConfig) else sorted(cfg.keys())
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""
        where = f" under {parent}" if isinstance(node, DictConfig) and parent else ""
        return (f"{key} is not a setting.{hint} Valid keys{where}: {', '.join(valid)} (+{key}=… adds a new key)")
    return None


def unwritable_output(argv: list[str]) -> str | None:
    """`hydra.run.dir` / `hydra.sweep.dir` set to a place where no folder can be made (under a file, read-only)."""
    for key, value in _assignments(argv):
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or "$" in value:
            continue
        existing = Path(value).absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            return f"{key}={value}: {existing} is not a writable folder; set {key} to a folder that can be made"
    return None


def command_line_problem(argv: list[str]) -> str | None:
    if any(arg in ("-sc", "--shell-completion") for arg in argv):
        return None  # Hydra's completion query (`query=bash`) is not a setting
    return unknown_group_choice(argv) or unwritable_output(argv) or unknown_key(argv)
