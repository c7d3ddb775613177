"""Adaptation methods, registered by name. A method is one file in this folder plus one yaml in `conf/method/`:

    @dataclass
    class Config:               # its hyper-parameters, validated in __post_init__
        ...

    @register("name", Config)
    def apply(model, cfg: Config, info: ModelInfo) -> nn.Module:
        # freeze / wrap / inject; return the model to train (usually the same object)

Optional hooks on the returned `Method` (set with keyword arguments of `register`): `eval_context(model, cfg)` (a context
manager around evaluation, e.g. LoRA's merge), `save(model, cfg, info, folder)` (the method's artifact) and
`optimizer_groups(model, cfg, lr, weight_decay)` (AdamW's parameter groups, each with its own `lr`, or None for the
training loop's own: LoRA+ trains B faster than A).
Two more reach into each training step (harness/train/loop.py; `model` is the unwrapped model):
`regularizer(model, cfg) -> tensor | None`, a term added to the loss that is back-propagated (not to the logged training
loss), and `after_step(model, cfg, step, total_steps)`, called after each real optimiser step (once per accumulation
window; `step` = 1 … total_steps) and before the gradients are zeroed (AdaLoRA: its orthogonality regulariser, and its
importance update and rank allocation, which read the gradients).
The runner freezes nothing itself: `apply` decides what trains; the runner then always trains the task head.

Budget knob, `method.budget=<params>`: sizes a method to a trainable-parameter budget counted without the task head (the
paper's count), so methods compare at equal budgets. A method opts in with two more `register` keywords:
`size_param="r"` (an int field of its Config: LoRA's rank, an adapter's bottleneck, a prefix's length) and, optionally,
`count=fn` with `fn(cfg, info, model) -> int` (the parameters `apply(model, cfg, info)` would make trainable, outside the
head, without changing `model`; a closed formula is best; AdaLoRA counts its final budget, what is left after pruning). Without `count` the knob applies the method to a copy of the
model and counts. At `apply` time the size value whose count is nearest the budget (ties: the smaller) is written into
the config in place, so `eval_context` and `save` see it too, and logged; the budget overrides the yaml's size value.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import logging
import pkgutil
from dataclasses import dataclass
from typing import Callable

from harness.errors import ConfigError, unknown_choice

# Keys every method yaml may carry that are not the method's own hyper-parameters (label and order: how reports show it;
# init_from: the run whose parameters it starts from, harness/init_from.py).
COMMON_KEYS = {"name", "lr", "budget", "label", "order", "init_from"}
log = logging.getLogger("harness")


@dataclass
class Method:
    name: str
    config_cls: type
    apply: Callable
    eval_context: Callable | None = None
    save: Callable | None = None
    size_param: str | None = None
    count: Callable | None = None
    regularizer: Callable | None = None   # (model, cfg) -> tensor | None, added to the training loss
    after_step: Callable | None = None    # (model, cfg, step, total_steps), after optimizer.step(), before zero_grad
    optimizer_groups: Callable | None = None   # (model, cfg, lr, weight_decay) -> AdamW groups | None
    budget: int | None = None         # method.budget: trainable parameters without the head, set by `build`

    def evaluating(self, model, cfg):
        return self.eval_context(model, cfg) if self.eval_context else contextlib.nullcontext()

    def param_groups(self, model, cfg, lr: float, weight_decay: float) -> list[dict] | None:
        """The method's own optimiser groups, or None: the training loop then makes its own."""
        return self.optimizer_groups(model, cfg, lr, weight_decay) if self.optimizer_groups else None

    def sized(self, cfg, info, model):
        """The config to apply to `model`: `cfg` itself, or with `method.budget` a new one whose size parameter gives
        the trainable count nearest the budget (the model is not changed)."""
        if self.budget is None:
            return cfg
        size = fit_budget(self, cfg, info, model, self.budget)
        cfg = dataclasses.replace(cfg, **{self.size_param: size})
        count = trainable_count(self, cfg, info, model)
        log.info("method.budget=%d: %s=%d (%d trainable parameters without the head)", self.budget, self.size_param,
                 size, count)
        if size == 1 and count > 2 * self.budget:
            log.warning("method.budget=%d is below %s's smallest size: %s=1 has %d trainable parameters (the run "
                        "uses it; the record's params say so)", self.budget, self.name, self.size_param, count)
        return cfg


REGISTRY: dict[str, Method] = {}


def register(name: str, config_cls: type, **hooks):
    size_param = hooks.get("size_param")
    if size_param and size_param not in {f.name for f in dataclasses.fields(config_cls)}:
        raise TypeError(f"method {name}: size_param={size_param!r} is not a field of {config_cls.__name__}")

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
        cfg = method.config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method ({name}): {exc}") from None
    budget = method_cfg.get("budget")
    if budget is not None:
        if not method.size_param:
            sized = sorted(n for n, m in REGISTRY.items() if m.size_param)
            raise ConfigError(f"method.budget needs a method with a size parameter; {name} has none "
                              f"(methods with one: {', '.join(sized)})")
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)   # `method.budget=3e5`
        if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
            raise ConfigError(f"method.budget must be a positive integer (parameters), got {budget!r}")
        method = dataclasses.replace(method, budget=budget)
    return method, cfg


def trainable_count(method: Method, cfg, info, model) -> int:
    """Trainable parameters outside the task head that `method` with `cfg` gives `model` (the model is not changed)."""
    if method.count:
        return int(method.count(cfg, info, model))
    adapted = method.apply(copy.deepcopy(model), cfg, info)
    return sum(p.numel() for n, p in adapted.named_parameters() if p.requires_grad and not info.is_head(n))


def fit_budget(method: Method, cfg, info, model, budget: int, largest: int = 1 << 20) -> int:
    """The size value (≥ 1) whose parameter count is nearest `budget`; counts grow with the size, so bisect."""
    def at(size: int) -> int:
        return trainable_count(method, dataclasses.replace(cfg, **{method.size_param: size}), info, model)

    hi = 1
    while at(hi) < budget and hi < largest:
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1   # at(hi // 2) < budget here, or hi == 1
    while lo < hi:                      # smallest size with count ≥ budget
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if at(mid) < budget else (lo, mid)
    if hi > 1 and budget - at(hi - 1) <= at(hi) - budget:
        return hi - 1
    return hi


def names() -> list[str]:
    _import_all()
    return sorted(REGISTRY)


def size_param(name: str) -> str | None:
    """The Config field that sizes method `name` (LoRA and adapters: r; prefixes: l_p; FT^Top2: top), None for a
    method without one (full fine-tuning, BitFit) or a name not registered: the registry is the one source."""
    _import_all()
    method = REGISTRY.get(name)
    return method.size_param if method else None


def added_defaults(name: str) -> dict:
    """The defaults of method `name`'s settings listed in its Config's `ADDED` (settings added after its run records
    existed, whose default is what those records ran with): reports read such a setting's absence as its default.
    {} for a method without them or a name not registered."""
    _import_all()
    method = REGISTRY.get(name)
    added = getattr(method.config_cls, "ADDED", ()) if method else ()
    return {f.name: f.default for f in dataclasses.fields(method.config_cls) if f.name in added} if added else {}


def recorded(composed: dict, method_cfg) -> dict:
    """The method config as it trained, for the record: every field, but a setting added after the method's first
    records (its Config's ADDED) that the composed config left out and that trains at its default stays out, as in
    those records (reports read its absence as the default). The record's config then still hashes to the run_id
    the run was composed under (results.run_id): a relaunched sweep, harness-analyze's grouping and the committed
    records' identity test all find it."""
    added = getattr(type(method_cfg), "ADDED", ())
    return {f.name: getattr(method_cfg, f.name) for f in dataclasses.fields(method_cfg)
            if not (f.name in added and f.name not in composed and getattr(method_cfg, f.name) == f.default)}


def size_key(method_cfg: dict) -> str | None:
    """Which setting sizes a run of this method config (its label in reports, its W&B tag): `budget` when set (the
    method then picks its own size), else the method's size parameter when the config sets it, else None."""
    if method_cfg.get("budget") is not None:
        return "budget"
    key = size_param(method_cfg.get("name"))
    return key if key and method_cfg.get(key) is not None else None


_imported = False


def _import_all():
    """Import every method module once (each registers itself)."""
    global _imported
    if not _imported:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _imported = True
