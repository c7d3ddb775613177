"""`trainer`: the training loop's settings, validated once, with what each setting means for a run marked on its field.

    identity=False   the setting does not change what is computed (progress bars, logging cadence, where caches and
                     checkpoints go): it is left out of the run's identity (results.run_id), so changing it resumes
                     or skips the same run
    identity="unless_default"
                     a setting added after runs were recorded, whose default computes what those runs computed: part
                     of the identity only when set to another value, so the ids of earlier runs stay valid (a
                     running sweep still skips and resumes them) and a record without it reads as the default
    score=True       the setting changes the score: reports keep runs that differ in it apart (never pooled as seeds)

Nothing here imports torch: reading run records (the report) asks these marks too.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass, field

from harness.errors import ConfigError


def _mark(default, kind=int, *, low=None, above=None, below=None, nullable=False, choices=None, hint="",
          identity: bool | str = True, score: bool = False):
    """A trainer field with what it may hold written once: its type, range (`low` ≤ v, `above` < v, v < `below`),
    null or not, its choices; and its marks (identity, score; see the module docstring)."""
    spec = {"kind": kind, "low": low, "above": above, "below": below, "nullable": nullable, "choices": choices,
            "hint": hint, "identity": identity, "score": score}
    return field(default=default, metadata=spec) if default is not MISSING else field(metadata=spec)


@dataclass
class TrainerConfig:
    lr: float = _mark(MISSING, float, above=0, score=True)
    epochs: int = _mark(3, low=0, hint=" (0: evaluate the model untrained; or set trainer.max_steps)", score=True)
    max_steps: int | None = _mark(None, above=0, nullable=True, score=True)
    batch_size: int = _mark(32, above=0, score=True)
    eval_batch_size: int = _mark(128, above=0)
    grad_accum: int = _mark(1, above=0, score=True)
    warmup_ratio: float = _mark(0.06, float, low=0, below=1, score=True)
    warmup_steps: int | None = _mark(None, low=0, nullable=True, score=True)   # set: used instead of warmup_ratio
    weight_decay: float = _mark(0.01, float, low=0, score=True)
    max_grad_norm: float | None = _mark(1.0, float, above=0, nullable=True, score=True)   # null: no clipping
    # ≥ 8: room for a sentence between the special tokens; the model's own limit is checked at start-up
    max_seq_len: int = _mark(128, low=8, score=True)
    max_train_samples: int | None = _mark(None, above=0, nullable=True)
    max_eval_samples: int | None = _mark(None, above=0, nullable=True, score=True)
    subset_seed: int = _mark(0, low=0, below=2**32)
    precision: str = _mark("auto", str, choices=("auto", "fp32", "bf16", "fp16"), score=True)
    device: str = _mark("auto", str, choices=("auto", "cpu", "cuda"))
    log_every: int = _mark(10, above=0, identity=False)
    eval_every_steps: int | None = _mark(None, above=0, nullable=True, score=True)
    progress: bool = _mark(True, bool, identity=False)
    cache_dir: str | None = _mark(None, str, nullable=True, identity=False)
    # also save a checkpoint every N optimiser steps (always at each epoch end)
    checkpoint_every: int | None = _mark(None, above=0, nullable=True, identity=False)
    keep_checkpoints: int = _mark(2, low=0, identity=False)      # 0: no checkpoints, no resume
    nonfinite_retries: int = _mark(0, low=0)    # batches with a non-finite loss/gradient skipped before `diverged`
    # batches of examples of similar length (less padding; harness/train/sampler.py): another order, another score
    group_by_length: bool = _mark(False, bool, score=True, identity="unless_default")

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            if spec.name == "epochs" and self.max_steps is not None:
                continue  # max_steps decides the length
            problem = field_problem(getattr(self, spec.name), spec.metadata)
            if problem:
                raise ConfigError(f"trainer.{spec.name}{problem}")
        self._check_device()

    def _check_device(self):
        """CUDA asked for (device, or a half precision, which needs it) where there is none: said before any load."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("trainer.device='cuda' but no CUDA device is available; valid choices here: auto, cpu")
        if self.precision in ("bf16", "fp16") and (self.device == "cpu" or not torch.cuda.is_available()):
            raise ConfigError(f"trainer.precision={self.precision} needs a CUDA device; valid choices on CPU: auto, "
                              "fp32")


def field_problem(value, spec: dict) -> str | None:
    """What is wrong with `value` for a field marked by `spec` (as `must be …, got …`), or None."""
    if value is None:
        return None if spec["nullable"] else f" must be set{spec['hint']}, got null"
    if spec["choices"] is not None:
        return None if value in spec["choices"] else f"={value!r} is not valid; valid choices: " + ", ".join(
            spec["choices"])
    kind = spec["kind"]
    numeric = kind in (int, float)
    wrong_type = isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float) if kind is float
                                                                              else kind)
    if not wrong_type and numeric and not math.isfinite(value):
        return f" must be a finite number {_describe(spec)}, got {value!r}"
    if wrong_type or not _in_range(value, spec):
        return f" must be {_describe(spec, wrong_type)}, got {value!r}"
    return None


def _in_range(value, spec: dict) -> bool:
    return ((spec["low"] is None or value >= spec["low"]) and (spec["above"] is None or value > spec["above"])
            and (spec["below"] is None or value < spec["below"]))


def _describe(spec: dict, wrong_type: bool = False) -> str:
    """`> 0`, `an integer ≥ 0`, `in [0, 1)`, `true or false` … as the error message says it."""
    kind, low, above, below = spec["kind"], spec["low"], spec["above"], spec["below"]
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a string" + (" or null" if spec["nullable"] else "")
    if low is not None and below is not None:
        text = f"in [{low:g}, {below:g})" if kind is float else f"an integer in [{low}, {below})"
    elif above is not None:
        text = ("an integer " if kind is int and wrong_type else "") + f"> {above:g}"
    elif low is not None:
        text = f"an integer ≥ {low}" if kind is int else f"≥ {low:g}"
    else:
        text = "an integer" if kind is int else "a finite number"
    return text + (" or null" if spec["nullable"] else "") + spec["hint"]


def keys(mark: str, value: bool = True) -> list[str]:
    """Trainer keys whose field carries `mark` (identity / score) = `value`, in field order."""
    return [f.name for f in dataclasses.fields(TrainerConfig) if f.metadata.get(mark) == value]


NOT_IDENTITY = tuple(keys("identity", False))   # progress, log_every, cache_dir, checkpoint_every, keep_checkpoints
SCORE_KEYS = tuple(keys("score"))                # lr, epochs, batch_size, grad_accum, max_grad_norm, precision, ...
# {key: default} of the settings in the identity only when not at their default (group_by_length)
IDENTITY_UNLESS_DEFAULT = {f.name: f.default for f in dataclasses.fields(TrainerConfig)
                           if f.metadata.get("identity") == "unless_default"}


def trainer_config(values: dict) -> TrainerConfig:
    """The `trainer` group as a validated TrainerConfig; an unknown or missing key is named with the valid ones."""
    known = [f.name for f in dataclasses.fields(TrainerConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"trainer.{unknown[0]} is not a trainer setting; valid keys: {', '.join(known)}")
    if values.get("lr") is None:
        raise ConfigError("trainer.lr is missing (set it, or method.lr which it defaults to)")
    return TrainerConfig(**values)
