"""The training loop: explicit, top to bottom, on 🤗 Accelerate (device placement, bf16/fp16 on GPU, gradient
accumulation; `accelerate launch` for several GPUs). AdamW + linear schedule with warmup, grad-norm clipping, evaluation
every epoch and selection of the best epoch on the task's headline metric (the paper's protocol).

Crash-safe: with a `Checkpoints` folder, training state is saved every `checkpoint_every` optimiser steps and at each
epoch end, and a later call resumes from the newest checkpoint, on CPU to the same final numbers as a run that was never
interrupted (the rest of an interrupted epoch replays the same batches in the same order: harness/train/checkpoint.py).
A non-finite loss or gradient skips its batch up to `nonfinite_retries` times, then ends the run as diverged."""
from __future__ import annotations

import dataclasses
import logging
import math
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harness.train.checkpoint import (Checkpoints, ResumableShuffle, load_trainable, rng_states, set_rng_states,
                               trainable_state)
from harness.errors import ConfigError
from harness.train.config import TrainerConfig

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The loss became non-finite: the run ends with status `diverged`, never with a silent NaN result."""


@dataclass
class TrainResult:
    per_epoch: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    best_epoch: int | None = None
    best_state: dict | None = None            # trainable parameters at the best evaluation (CPU copies)
    best_stats: dict = field(default_factory=dict)  # the evaluator's prediction statistics at the best evaluation
    losses: list[float] = field(default_factory=list)  # training loss of every batch, in order
    nonfinite_skipped: int = 0
    resumed_from: dict | None = None          # {step, epoch, batch} of the checkpoint this call started from
    cost: dict = field(default_factory=dict)
    steps: int = 0

    PROGRESS = ("per_epoch", "best", "best_epoch", "best_stats", "losses", "nonfinite_skipped")


def make_accelerator(tcfg: TrainerConfig):
    from accelerate import Accelerator

    use_cuda = tcfg.device != "cpu" and torch.cuda.is_available()
    precision = tcfg.precision
    if precision == "auto":
        precision = "bf16" if use_cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision != "fp32" and not use_cuda:
        raise ConfigError(f"trainer.precision={precision} needs a CUDA device; valid choices on CPU: auto, fp32")
    return Accelerator(cpu=not use_cuda, mixed_precision="no" if precision == "fp32" else precision,
                       gradient_accumulation_steps=tcfg.grad_accum)


def param_groups(model, weight_decay: float):
    """AdamW groups: no decay on biases and normalisation weights (1-D tensors), as in BERT/RoBERTa fine-tuning."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_memory_bytes(device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB: peak RSS of the process


def fit(model, train_ds, tcfg: TrainerConfig, *, collate: Callable, evaluate: Callable, headline: str,
        tracker, seed: int, loss_fn: Callable | None = None, accelerator=None, checkpoints: Checkpoints | None = None,
        on_progress: Callable | None = None) -> TrainResult:
    """Train `model` on `train_ds`; `evaluate(model) -> {metric: value}` runs after every epoch (and every
    `eval_every_steps`); the best evaluation on `headline` is kept (higher is better for every metric we select on).
    With `checkpoints`, training resumes from the newest checkpoint there and saves new ones; `on_progress(result)`
    runs after each evaluation, so that the caller can record the history so far."""
    from transformers import get_linear_schedule_with_warmup

    accelerator = accelerator or make_accelerator(tcfg)
    generator = torch.Generator().manual_seed(seed)  # the training order, and nothing else
    sampler = ResumableShuffle(len(train_ds), generator)
    loader = DataLoader(train_ds, batch_size=tcfg.batch_size, sampler=sampler, generator=generator, collate_fn=collate)
    steps_per_epoch = math.ceil(len(loader) / tcfg.grad_accum)
    total_steps = tcfg.max_steps or tcfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(tcfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss_fn = loss_fn or (lambda m, batch: m(**batch).loss)
    device = accelerator.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    result = TrainResult()
    step, tokens, step_times = 0, 0, []
    start_epoch, batch_in_epoch, epoch_loss, epoch_n = 1, 0, 0.0, 0
    window_loss, window_n = 0.0, 0
    before = {"train_seconds": 0.0, "eval_seconds": 0.0, "checkpoint_seconds": 0.0}  # spent by earlier calls
    saved = checkpoints.latest() if checkpoints else None
    if saved:
        load_trainable(accelerator.unwrap_model(model), saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        for key in TrainResult.PROGRESS:
            setattr(result, key, saved["progress"][key])
        result.best_state = saved["best_state"]
        step, start_epoch, batch_in_epoch = saved["step"], saved["epoch"], saved["batch"]
        c = saved["counters"]
        tokens, epoch_loss, epoch_n, window_loss, window_n = (c["tokens"], c["epoch_loss"], c["epoch_n"],
                                                              c["window_loss"], c["window_n"])
        before = {key: c[key] for key in before}
        generator.set_state(saved["epoch_generator"])
        sampler.skip = batch_in_epoch * tcfg.batch_size
        result.resumed_from = {"step": step, "epoch": start_epoch, "batch": batch_in_epoch}
        log.info("resuming at step %d (epoch %d, %d batch(es) in) from %s", step, start_epoch, batch_in_epoch,
                 checkpoints.folder)
        if on_progress:
            on_progress(result)
        set_rng_states(saved["rng"])  # last: from here on every draw is the one the interrupted run would have made
    bar = tqdm(total=total_steps, initial=step, desc="train", disable=not tcfg.progress, dynamic_ncols=True,
               mininterval=1.0)
    spent = {"eval_seconds": 0.0, "checkpoint_seconds": 0.0}  # by this call
    t_start = time.perf_counter()

    def train_seconds() -> float:
        return before["train_seconds"] + time.perf_counter() - t_start - sum(spent.values())

    def run_eval(epoch: float):
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            metrics = evaluate(accelerator.unwrap_model(model))
        model.train()
        spent["eval_seconds"] += time.perf_counter() - t0
        row = {"epoch": epoch, "step": step, "train_loss": epoch_loss / max(epoch_n, 1), **metrics}
        result.per_epoch.append(row)
        tracker.log({f"eval/{k}": v for k, v in metrics.items()} | {"epoch": epoch}, step=step)
        if result.best_epoch is None or metrics[headline] > result.best[headline]:
            result.best, result.best_epoch = dict(metrics), epoch
            result.best_stats = dict(getattr(metrics, "stats", {}))
            result.best_state = trainable_state(accelerator.unwrap_model(model))
        bar.write(f"epoch {epoch:g} step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    def save(next_epoch: int, next_batch: int, epoch_generator: torch.Tensor):
        """A checkpoint from which training goes on at batch `next_batch` of epoch `next_epoch`, whose order is drawn
        from `epoch_generator`."""
        t0 = time.perf_counter()
        checkpoints.save({
            "step": step, "epoch": next_epoch, "batch": next_batch, "epoch_generator": epoch_generator,
            "rng": rng_states(), "model": trainable_state(accelerator.unwrap_model(model)),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "progress": {key: getattr(result, key) for key in TrainResult.PROGRESS}, "best_state": result.best_state,
            "counters": {"tokens": tokens, "epoch_loss": epoch_loss, "epoch_n": epoch_n, "window_loss": window_loss,
                         "window_n": window_n, "train_seconds": train_seconds(),
                         **{key: before[key] + spent[key] for key in spent}}})
        spent["checkpoint_seconds"] += time.perf_counter() - t0

    if total_steps == 0 and not result.per_epoch:  # trainer.epochs=0: the untrained (zero-shot) baseline
        run_eval(0)
        if on_progress:
            on_progress(result)
    model.train()
    for epoch in range(start_epoch, epochs + 1):
        if step >= total_steps:
            break
        epoch_generator = generator.get_state()  # this epoch's order is drawn from here: a checkpoint replays it
        t_step = time.perf_counter()
        for batch in loader:
            batch_in_epoch += 1
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                value = loss.item()
                finite_loss, norm = math.isfinite(value), None
                if finite_loss:
                    accelerator.backward(loss)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(trainable, tcfg.max_grad_norm or math.inf)
                finite_grad = norm is None or bool(torch.isfinite(norm))
                if finite_grad:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if finite_loss and finite_grad:
                tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
                epoch_loss, epoch_n = epoch_loss + value, epoch_n + 1
                window_loss, window_n = window_loss + value, window_n + 1
                result.losses.append(value)
            else:  # skip the batch, or give up: never a silent NaN result
                result.nonfinite_skipped += 1
                what = f"loss ({value})" if not finite_loss else f"gradient norm ({float(norm)})"
                where = f"at step {step + 1}, epoch {epoch}"
                if result.nonfinite_skipped > tcfg.nonfinite_retries:
                    raise Diverged(f"non-finite training {what} {where}" + (
                        f", after {tcfg.nonfinite_retries} skipped batch(es) (trainer.nonfinite_retries)"
                        if tcfg.nonfinite_retries else ""))
                log.warning("non-finite training %s %s: batch skipped (%d of trainer.nonfinite_retries=%d)", what,
                            where, result.nonfinite_skipped, tcfg.nonfinite_retries)
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            step_times.append(now - t_step)
            t_step = now
            elapsed = max(train_seconds(), 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", tok_s=f"{tokens / elapsed:.0f}", refresh=False)
            if (step % tcfg.log_every == 0 or step == total_steps) and window_n:
                tracker.log({"train/loss": window_loss / window_n, "train/lr": scheduler.get_last_lr()[0],
                             "train/tokens_per_second": tokens / elapsed, "epoch": epoch}, step=step)
                window_loss, window_n = 0.0, 0
            if step >= total_steps:
                break
            evaluated = bool(tcfg.eval_every_steps and step % tcfg.eval_every_steps == 0)
            if evaluated:
                run_eval(round(step / steps_per_epoch, 3))
            if checkpoints and checkpoints.due(step):  # after any evaluation at this step: it draws from torch's RNG
                save(epoch, batch_in_epoch, epoch_generator)
            if evaluated and on_progress:
                on_progress(result)
            t_step = time.perf_counter()
        run_eval(epoch if step % steps_per_epoch == 0 or step < total_steps else round(step / steps_per_epoch, 3))
        batch_in_epoch, epoch_loss, epoch_n = 0, 0.0, 0
        if checkpoints:
            save(epoch + 1, 0, generator.get_state())
        if on_progress:
            on_progress(result)
    bar.close()
    result.steps = step
    result.cost = {
        "train_seconds": round(train_seconds(), 3),
        "eval_seconds": round(before["eval_seconds"] + spent["eval_seconds"], 3),
        "checkpoint_seconds": round(before["checkpoint_seconds"] + spent["checkpoint_seconds"], 3),
        "peak_memory_bytes": peak_memory_bytes(device),
        "tokens_per_second": round(tokens / max(train_seconds(), 1e-9), 1),
        "step_seconds_median": round(statistics.median(step_times), 5) if step_times else None,
        "steps": step,
        "device": str(device),
        "precision": accelerator.mixed_precision,
    }
    return result
