"""`trainer`: the training loop's settings, validated once, with what each setting means for a run marked on its field.

    identity=False   the setting does not change what is computed (progress bars, logging cadence, where caches and
                     checkpoints go): it is left out of the run's identity (results.run_id), so changing it resumes
                     or skips the same run
    score=True       the setting changes the score: reports keep runs that differ in it apart (never pooled as seeds)

Nothing here imports torch: reading run records (the report) asks these marks too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from harness.errors import ConfigError


def _mark(default, *, identity: bool = True, score: bool = False):
    return field(default=default, metadata={"identity": identity, "score": score})


@dataclass
class TrainerConfig:
    lr: float = field(metadata={"identity": True, "score": True})
    epochs: int = _mark(3, score=True)
    max_steps: int | None = _mark(None, score=True)
    batch_size: int = _mark(32, score=True)
    eval_batch_size: int = _mark(128)
    grad_accum: int = _mark(1)
    warmup_ratio: float = _mark(0.06, score=True)
    weight_decay: float = _mark(0.01, score=True)
    max_grad_norm: float | None = _mark(1.0)
    max_seq_len: int = _mark(128, score=True)
    max_train_samples: int | None = _mark(None)
    max_eval_samples: int | None = _mark(None)
    subset_seed: int = _mark(0)
    precision: str = _mark("auto")
    device: str = _mark("auto")
    log_every: int = _mark(10, identity=False)
    eval_every_steps: int | None = _mark(None)
    progress: bool = _mark(True, identity=False)
    cache_dir: str | None = _mark(None, identity=False)
    # also save a checkpoint every N optimiser steps (always at each epoch end)
    checkpoint_every: int | None = _mark(None, identity=False)
    keep_checkpoints: int = _mark(2, identity=False)      # 0: no checkpoints, no resume
    nonfinite_retries: int = _mark(0)    # batches with a non-finite loss/gradient skipped before the run is diverged

    def __post_init__(self):
        self._check_positive()
        if self.max_steps is None and not _is_int(self.epochs, low=0):
            raise ConfigError(f"trainer.epochs must be an integer ≥ 0 (0: evaluate the model untrained; or set "
                              f"trainer.max_steps), got {self.epochs!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"trainer.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise ConfigError(f"trainer.weight_decay must be ≥ 0, got {self.weight_decay}")
        for key in ("keep_checkpoints", "nonfinite_retries"):
            if not _is_int(getattr(self, key), low=0):
                raise ConfigError(f"trainer.{key} must be an integer ≥ 0, got {getattr(self, key)!r}")
        for key, choices in (("precision", ("auto", "fp32", "bf16", "fp16")), ("device", ("auto", "cpu", "cuda"))):
            if getattr(self, key) not in choices:
                raise ConfigError(f"trainer.{key}={getattr(self, key)!r} is not valid; valid choices: {', '.join(choices)}")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("trainer.device='cuda' but no CUDA device is available; valid choices here: auto, cpu")

    def _check_positive(self):
        positive = ["lr", "batch_size", "eval_batch_size", "grad_accum", "max_seq_len", "log_every"]
        optional = ("max_steps", "max_train_samples", "max_eval_samples", "eval_every_steps", "checkpoint_every")
        positive += [k for k in optional if getattr(self, k) is not None]
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"trainer.{key} must be > 0, got {value!r}")


def _is_int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def keys(mark: str, value: bool = True) -> list[str]:
    """Trainer keys whose field carries `mark` (identity / score) = `value`, in field order."""
    return [f.name for f in dataclasses.fields(TrainerConfig) if f.metadata.get(mark) == value]


NOT_IDENTITY = tuple(keys("identity", False))   # progress, log_every, cache_dir, checkpoint_every, keep_checkpoints
SCORE_KEYS = tuple(keys("score"))                # lr, epochs, max_steps, batch_size, warmup_ratio, weight_decay, ...


def trainer_config(values: dict) -> TrainerConfig:
    """The `trainer` group as a validated TrainerConfig; an unknown or missing key is named with the valid ones."""
    known = [f.name for f in dataclasses.fields(TrainerConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"trainer.{unknown[0]} is not a trainer setting; valid keys: {', '.join(known)}")
    if values.get("lr") is None:
        raise ConfigError("trainer.lr is missing (set it, or method.lr which it defaults to)")
    return TrainerConfig(**values)
