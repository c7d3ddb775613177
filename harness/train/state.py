"""What a training run has done so far, and how it checkpoints and restores itself.

A `TrainingState` is the position in the run (optimiser step, epoch, batches of the epoch done), the running counters
(tokens, the epoch's and the logging window's losses), the clock (training, evaluation and checkpoint seconds, across
resumes) and the result so far (evaluations, the best one and its parameters, every batch loss). `save` writes it with
the trainable parameters, optimiser, scheduler, RNG states and the epoch's shuffle state into one checkpoint
(harness/train/checkpoint.py); `restore` puts all of it back so that, on CPU, a resumed run ends with the same numbers
as one that was never interrupted.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from harness.train.checkpoint import Checkpoints, load_trainable, rng_states, set_rng_states, trainable_state


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


@dataclass
class Counters:
    tokens: int = 0
    epoch_loss: float = 0.0
    epoch_n: int = 0
    window_loss: float = 0.0    # since the last logged step (trainer.log_every)
    window_n: int = 0

    def add(self, loss: float, tokens: int) -> None:
        self.tokens += tokens
        self.epoch_loss, self.epoch_n = self.epoch_loss + loss, self.epoch_n + 1
        self.window_loss, self.window_n = self.window_loss + loss, self.window_n + 1

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
            "rng": rng_states(), "model": trainable_state(parts["model"]),
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
        parts["optimizer"].load_state_dict(saved["optimizer"])
        parts["scheduler"].load_state_dict(saved["scheduler"])
        result = TrainResult(**{key: saved["progress"].get(key) for key in TrainResult.PROGRESS},
                             best_state=saved["best_state"])
        result.resumed_from = {"step": saved["step"], "epoch": saved["epoch"], "batch": saved["batch"]}
        counts = saved["counters"]
        counters = Counters(**{k: counts[k] for k in vars(Counters())})
        clock = Clock({k: counts[k] for k in ("train_seconds", *Clock.PARTS)})
        generator.set_state(saved["epoch_generator"])
        return cls(saved["step"], saved["epoch"], saved["batch"], counters, result, clock)

    @staticmethod
    def resume_rng(saved: dict) -> None:
        """Last: from here on every draw is the one the interrupted run would have made."""
        set_rng_states(saved["rng"])
