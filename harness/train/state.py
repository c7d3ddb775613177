"""What a training run has done so far, and how it checkpoints and restores itself.

A `TrainingState` is the position in the run (optimiser step, epoch, batches of the epoch done), the running counters
(tokens, the epoch's and the logging window's losses), the clock (training, evaluation and checkpoint seconds, across
resumes) and the result so far (evaluations, the best one and its parameters, every batch loss). `save` writes it with
the trainable parameters (and the buffers training changes), optimiser, scheduler, RNG states and the epoch's shuffle
state into one checkpoint (harness/train/checkpoint.py); `restore` puts all of it back so that, on CPU, a resumed run
ends with the same numbers as one that was never interrupted.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from harness.train.checkpoint import (Checkpoints, buffer_state, load_buffers, load_trainable, rng_states,
                                      set_rng_states, trainable_state)


class Diverged(RuntimeError):
    """The loss became non-finite: the run ends with status `diverged`, never with a silent NaN result."""


@dataclass
class TrainResult:
    per_epoch: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    best_epoch: int | None = None
    best_state: dict | None = None            # trainable parameters at the best evaluation (CPU copies)
    best_stats: dict = field(default_factory=dict)  # the evaluator's prediction statistics at the best evaluation
    best_predictions: list | None = None      # the evaluator's per-example rows at the best evaluation
    losses: list[float] = field(default_factory=list)  # training loss of every batch, in order
    nonfinite_skipped: int = 0
    resumed_from: dict | None = None          # {step, epoch, batch} of the checkpoint this call started from
    cost: dict = field(default_factory=dict)
    steps: int = 0

    PROGRESS = ("per_epoch", "best", "best_epoch", "best_stats", "best_predictions", "losses", "nonfinite_skipped")

    def loss_curve(self, every: int, batches_per_step: int = 1, most: int = 200) -> dict:
        """The training loss as a learning curve, for the claim scorecard's convergence claims (LoRA+, PiSSA): the mean
        batch loss over each window of `every` optimiser steps (wider windows once there would be over `most`),
        {"step": [each window's last step], "loss": [...]}; a last, shorter window included."""
        steps = math.ceil(len(self.losses) / batches_per_step)
        width = every * max(1, math.ceil(steps / (every * most)))
        size = width * batches_per_step
        points = [(min((i + size) // batches_per_step, steps), statistics.fmean(self.losses[i:i + size]))
                  for i in range(0, len(self.losses), size)]
        return {"step": [step for step, _ in points], "loss": [round(loss, 6) for _, loss in points]}


class Clock:
    """Seconds spent training, evaluating and checkpointing, this call and the calls before a resume together.
    Training time is wall time less evaluation and checkpoint time."""

    PARTS = ("eval_seconds", "checkpoint_seconds")

    def __init__(self, before: dict | None = None):
        self.before = before or {"train_seconds": 0.0, "eval_seconds": 0.0, "checkpoint_seconds": 0.0}
        self.spent = dict.fromkeys(self.PARTS, 0.0)
        self.start = time.perf_counter()

    def train_seconds(self) -> float:
        return self.before["train_seconds"] + time.perf_counter() - self.start - sum(self.spent.values())

    def add(self, part: str, since: float) -> None:
        self.spent[part] += time.perf_counter() - since

    def totals(self) -> dict:
        return {"train_seconds": self.train_seconds(), **{k: self.before[k] + self.spent[k] for k in self.PARTS}}


def _plus(total, more):
    """A running count that stays unknown (None) once a part of it is: a resume from a checkpoint written before the
    count existed, or a model whose FLOPs could not be counted."""
    return None if total is None or more is None else total + more


@dataclass
class Counters:
    tokens: int = 0               # real (unpadded) tokens of the trained batches
    positions: int | None = 0     # positions of the trained batches, padding included
    flops: int | None = 0         # training FLOPs of the trained batches (harness/flops.py)
    eval_examples: int | None = 0   # examples evaluated, over every evaluation
    epoch_loss: float = 0.0
    epoch_n: int = 0
    window_loss: float = 0.0    # since the last logged step (trainer.log_every)
    window_n: int = 0

    def add(self, loss: float, tokens: int, positions: int | None = None, flops: int | None = None) -> None:
        self.tokens += tokens
        self.positions, self.flops = _plus(self.positions, positions), _plus(self.flops, flops)
        self.epoch_loss, self.epoch_n = self.epoch_loss + loss, self.epoch_n + 1
        self.window_loss, self.window_n = self.window_loss + loss, self.window_n + 1

    def add_eval(self, examples: int | None) -> None:
        self.eval_examples = _plus(self.eval_examples, examples)

    def rates(self, train_seconds: float, eval_seconds: float) -> dict:
        """The run's cost rates for its record: training FLOPs (total, per token, per second), the share of padding
        in the training batches, evaluated examples per second; null where a count is unknown."""
        known = self.flops is not None and self.tokens > 0
        return {"train_flops": self.flops,
                "flops_per_token": round(self.flops / self.tokens, 1) if known else None,
                "flops_per_second": round(self.flops / max(train_seconds, 1e-9), 1) if known else None,
                "padding_share": round(1 - self.tokens / self.positions, 4) if self.positions else None,
                "eval_examples_per_second": round(self.eval_examples / max(eval_seconds, 1e-9), 2)
                if self.eval_examples else None}

    def take_window(self) -> float:
        mean = self.window_loss / self.window_n
        self.window_loss, self.window_n = 0.0, 0
        return mean

    def new_epoch(self) -> None:
        self.epoch_loss, self.epoch_n = 0.0, 0


@dataclass
class TrainingState:
    step: int = 0                 # optimiser steps done
    epoch: int = 1                # the epoch to run (or running)
    batch: int = 0                # batches of that epoch done
    counters: Counters = field(default_factory=Counters)
    result: TrainResult = field(default_factory=TrainResult)
    clock: Clock = field(default_factory=Clock)

    def save(self, checkpoints: Checkpoints, parts: dict, next_epoch: int, next_batch: int,
             epoch_generator: torch.Tensor) -> None:
        """A checkpoint from which training goes on at batch `next_batch` of epoch `next_epoch`, whose order is drawn
        from `epoch_generator`. `parts`: the unwrapped model, the optimizer and the scheduler."""
        since = time.perf_counter()
        checkpoints.save({
            "step": self.step, "epoch": next_epoch, "batch": next_batch, "epoch_generator": epoch_generator,
            "rng": rng_states(), "model": trainable_state(parts["model"]), "buffers": buffer_state(parts["model"]),
            "optimizer": parts["optimizer"].state_dict(), "scheduler": parts["scheduler"].state_dict(),
            "progress": {key: getattr(self.result, key) for key in TrainResult.PROGRESS},
            "best_state": self.result.best_state,
            "counters": {**vars(self.counters), **self.clock.totals()}})
        self.clock.add("checkpoint_seconds", since)

    @classmethod
    def restore(cls, saved: dict, parts: dict, generator: torch.Generator) -> "TrainingState":
        """The state a checkpoint holds, put back into the model, optimizer, scheduler and the shuffle generator.
        RNG states are restored by `resume_rng` last, after any other draw."""
        load_trainable(parts["model"], saved["model"])
        load_buffers(parts["model"], saved.get("buffers", {}))   # older checkpoints: none (no method had any)
        parts["optimizer"].load_state_dict(saved["optimizer"])
        parts["scheduler"].load_state_dict(saved["scheduler"])
        result = TrainResult(**{key: saved["progress"].get(key) for key in TrainResult.PROGRESS},
                             best_state=saved["best_state"])
        result.resumed_from = {"step": saved["step"], "epoch": saved["epoch"], "batch": saved["batch"]}
        counts = saved["counters"]
        counters = Counters(**{k: counts.get(k) for k in vars(Counters())})   # None: not counted before
        clock = Clock({k: counts[k] for k in ("train_seconds", *Clock.PARTS)})
        generator.set_state(saved["epoch_generator"])
        return cls(saved["step"], saved["epoch"], saved["batch"], counters, result, clock)

    @staticmethod
    def resume_rng(saved: dict) -> None:
        """Last: from here on every draw is the one the interrupted run would have made."""
        set_rng_states(saved["rng"])
