"""AdaLoRA's budget: the cubic schedule b(t) and the allocation that keeps the b(t) most important triplets
(Zhang et al. 2023, eqs. 8–9), for the SVD layers of methods/adalora.py.

Steps are counted as the training loop counts optimiser steps: `step` is the number of the step just taken, 1 … T.
With t_i = `tinit` and t_f = `tfinal` (steps, or fractions of T rounded to steps):

    t ≤ t_i              b(t) = b(0) = Σ r₀ (every triplet), no pruning; importance is accumulated
    t_i < t < T − t_f    b(t) = ⌊b(T) + (b(0) − b(T))·(1 − (t − t_i)/(T − t_f − t_i))³⌋, pruned every `delta_t` steps
    t = T − t_f          b(T) = target_r × matrices: the last allocation, fixed from here on (importance frozen)
    t > T − t_f          the fixed allocation is applied again after every step

A triplet is pruned by setting its λ to 0; its P column and Q row stay (and still train, as in the authors' code and
peft, which mask λ rather than resize). Between two allocations the optimiser may move a pruned λ off zero again until
the next one (peft does the same); from T − t_f on it is re-masked after every step. The allocation keeps the triplets
whose score is above the (b(0) − b(t))-th smallest: ties at that score are all pruned (peft's `kthvalue` rule).
"""
from __future__ import annotations

import torch

from harness.errors import ConfigError


def _steps(key: str, value, total: int | None) -> int | None:
    """A schedule length as steps: an int is steps, a float in [0, 1) a fraction of the run's `total` steps."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number of steps (int ≥ 0) or a fraction of the run in [0, 1), got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{key} must be ≥ 0 steps, got {value}")
        return value
    if not 0 <= value < 1:
        raise ValueError(f"{key}={value!r}: a float is a fraction of the run's steps, in [0, 1); give steps as an int")
    return None if total is None else round(value * total)


def schedule_steps(cfg, total: int | None) -> tuple[int | None, int | None]:
    """(t_i, t_f) in steps for a run of `total` optimiser steps (None: only check the values, as Config does)."""
    tinit, tfinal = _steps("tinit", cfg.tinit, total), _steps("tfinal", cfg.tfinal, total)
    if isinstance(cfg.tinit, float) and isinstance(cfg.tfinal, float) and cfg.tinit + cfg.tfinal >= 1:
        raise ValueError(f"tinit + tfinal = {cfg.tinit + cfg.tfinal:g} leaves no steps to prune in; keep it below 1")
    if total is not None and tinit >= total - tfinal:
        raise ConfigError(f"method.tinit={cfg.tinit} and method.tfinal={cfg.tfinal} ({tinit} + {tfinal} steps) leave "
                          f"no budgeting phase in this run's {total} optimiser steps; lower them (or give fractions)")
    return tinit, tfinal


def budget(step: int, total: int, initial: int, final: int, tinit: int, tfinal: int, delta_t: int) -> tuple[int, bool]:
    """(b(t), whether step t allocates) for the schedule in the module docstring (the cubic decrease of eq. 9)."""
    if step <= tinit:
        return initial, False
    if step > total - tfinal:
        return final, True
    left = 1 - (step - tinit) / (total - tfinal - tinit)
    return int((initial - final) * left ** 3 + final), step % delta_t == 0 or step == total - tfinal


@torch.no_grad()
def allocate(layers: list, keep_total: int) -> None:
    """Keep the `keep_total` highest-scoring triplets over all layers (ties at the threshold pruned) and zero the rest."""
    scores = [layer.scores() for layer in layers]
    prune = sum(layer.r for layer in layers) - keep_total
    threshold = torch.kthvalue(torch.cat(scores), prune).values if prune > 0 else None
    for layer, score in zip(layers, scores):
        layer.keep.copy_(score > threshold if threshold is not None else torch.ones_like(layer.keep))
        layer.apply_keep()
