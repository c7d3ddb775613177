"""The training loop: explicit, top to bottom, on 🤗 Accelerate (device placement, bf16/fp16 on GPU, gradient
accumulation; `accelerate launch` for several GPUs). AdamW + linear schedule with warmup, grad-norm clipping, evaluation
every epoch and selection of the best epoch on the task's headline metric (the paper's protocol)."""
from __future__ import annotations

import math
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harness.errors import ConfigError


@dataclass
class TrainerConfig:
    lr: float
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    grad_accum: int = 1
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    max_seq_len: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    subset_seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    log_every: int = 10
    eval_every_steps: int | None = None
    progress: bool = True
    cache_dir: str | None = None

    def __post_init__(self):
        positive = ["lr", "batch_size", "eval_batch_size", "grad_accum", "max_seq_len", "log_every"]
        positive += [k for k in ("max_steps", "max_train_samples", "max_eval_samples", "eval_every_steps") if getattr(self, k) is not None]
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"trainer.{key} must be > 0, got {value!r}")
        if self.max_steps is None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError(f"trainer.epochs must be an integer ≥ 1 (or set trainer.max_steps), got {self.epochs!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"trainer.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise ConfigError(f"trainer.weight_decay must be ≥ 0, got {self.weight_decay}")
        for key, choices in (("precision", ("auto", "fp32", "bf16", "fp16")), ("device", ("auto", "cpu", "cuda"))):
            if getattr(self, key) not in choices:
                raise ConfigError(f"trainer.{key}={getattr(self, key)!r} is not valid; valid choices: {', '.join(choices)}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("trainer.device='cuda' but no CUDA device is available; valid choices here: auto, cpu")


class Diverged(RuntimeError):
    """The loss became non-finite: the run ends with status `diverged`, never with a silent NaN result."""


@dataclass
class TrainResult:
    per_epoch: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    best_epoch: int | None = None
    best_state: dict | None = None            # trainable parameters at the best evaluation (CPU copies)
    cost: dict = field(default_factory=dict)
    steps: int = 0


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
        tracker, seed: int, loss_fn: Callable | None = None, accelerator=None) -> TrainResult:
    """Train `model` on `train_ds`; `evaluate(model) -> {metric: value}` runs after every epoch (and every
    `eval_every_steps`); the best evaluation on `headline` is kept (higher is better for every metric we select on)."""
    from transformers import get_linear_schedule_with_warmup

    accelerator = accelerator or make_accelerator(tcfg)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_ds, batch_size=tcfg.batch_size, shuffle=True, generator=generator, collate_fn=collate)
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
    step, tokens, step_times, eval_seconds = 0, 0, [], 0.0
    window_loss, window_n = 0.0, 0
    bar = tqdm(total=total_steps, desc="train", disable=not tcfg.progress, dynamic_ncols=True, mininterval=1.0)
    t_start = time.perf_counter()

    def run_eval(epoch: float):
        nonlocal eval_seconds
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            metrics = evaluate(accelerator.unwrap_model(model))
        model.train()
        eval_seconds += time.perf_counter() - t0
        row = {"epoch": epoch, "step": step, "train_loss": epoch_loss / max(epoch_n, 1), **metrics}
        result.per_epoch.append(row)
        tracker.log({f"eval/{k}": v for k, v in metrics.items()} | {"epoch": epoch}, step=step)
        if result.best_epoch is None or metrics[headline] > result.best[headline]:
            result.best, result.best_epoch = dict(metrics), epoch
            result.best_state = {n: p.detach().to("cpu", copy=True) for n, p in
                                 accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        bar.write(f"epoch {epoch:g} step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    model.train()
    for epoch in range(1, epochs + 1):
        epoch_loss, epoch_n = 0.0, 0
        t_step = time.perf_counter()
        for batch in loader:
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise Diverged(f"non-finite training loss ({loss.item()}) at step {step + 1}, epoch {epoch}")
                accelerator.backward(loss)
                if accelerator.sync_gradients and tcfg.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, tcfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            value = loss.item()
            epoch_loss, epoch_n = epoch_loss + value, epoch_n + 1
            window_loss, window_n = window_loss + value, window_n + 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            step_times.append(now - t_step)
            t_step = now
            elapsed = now - t_start - eval_seconds
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}", refresh=False)
            if step % tcfg.log_every == 0 or step == total_steps:
                tracker.log({"train/loss": window_loss / window_n, "train/lr": scheduler.get_last_lr()[0],
                             "train/tokens_per_second": tokens / max(elapsed, 1e-9), "epoch": epoch}, step=step)
                window_loss, window_n = 0.0, 0
            if tcfg.eval_every_steps and step % tcfg.eval_every_steps == 0 and step < total_steps:
                run_eval(round(step / steps_per_epoch, 3))
                t_step = time.perf_counter()
            if step >= total_steps:
                break
        run_eval(epoch if step % steps_per_epoch == 0 or step < total_steps else round(step / steps_per_epoch, 3))
        if step >= total_steps:
            break
    bar.close()
    train_seconds = time.perf_counter() - t_start - eval_seconds
    result.steps = step
    result.cost = {
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "peak_memory_bytes": peak_memory_bytes(device),
        "tokens_per_second": round(tokens / max(train_seconds, 1e-9), 1),
        "step_seconds_median": round(statistics.median(step_times), 5) if step_times else None,
        "steps": step,
        "device": str(device),
        "precision": accelerator.mixed_precision,
    }
    return result
