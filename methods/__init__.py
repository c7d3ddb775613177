"""Adaptation methods, registered by name. A method is one file in this folder plus one yaml in `conf/method/`:

    @dataclass
    class Config:               # its hyper-parameters, validated in __post_init__
        ...

    @register("name", Config)
    def apply(model, cfg: Config, info: ModelInfo) -> nn.Module:
        # freeze / wrap / inject; return the model to train (usually the same object)

Optional hooks on the returned `Method` (set with keyword arguments of `register`): `eval_context(model, cfg)` (a context
manager around evaluation, e.g. LoRA's merge) and `save(model, cfg, info, folder)` (the method's artifact).
The runner freezes nothing itself: `apply` decides what trains; the runner then always trains the task head.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from harness.errors import ConfigError, unknown_choice

# Keys every method yaml may carry that are not the method's own hyper-parameters.
COMMON_KEYS = {"name", "lr"}


@dataclass
class Method:
    name: str
    config_cls: type
    apply: Callable
    eval_context: Callable | None = None
    save: Callable | None = None

    def evaluating(self, model, cfg):
        return self.eval_context(model, cfg) if self.eval_context else contextlib.nullcontext()


REGISTRY: dict[str, Method] = {}


def register(name: str, config_cls: type, **hooks):
    def decorator(apply):
        REGISTRY[name] = Method(name, config_cls, apply, **hooks)
        return apply

    return decorator


def build(method_cfg: dict) -> tuple[Method, object]:
    """The registered method and its validated config, from the composed `method` group."""
    _import_all()
    name = method_cfg.get("name")
    if name not in REGISTRY:
        raise unknown_choice("method.name", name, REGISTRY)
    method = REGISTRY[name]
    known = {f.name for f in dataclasses.fields(method.config_cls)}
    values = {k: v for k, v in method_cfg.items() if k not in COMMON_KEYS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"method.{unknown[0]} is not a {name} setting; valid keys: {', '.join(sorted(known | COMMON_KEYS))}")
    try:
        return method, method.config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method ({name}): {exc}") from None


def names() -> list[str]:
    _import_all()
    return sorted(REGISTRY)


def _import_all():
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
