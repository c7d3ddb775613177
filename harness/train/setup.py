"""The pieces one training call is prepared from (harness/train/loop.py `fit`): the accelerator (device, precision,
gradient accumulation), AdamW's parameter groups (a method's own, e.g. LoRA+, else decay / no decay), the linear
schedule with warm-up, the seeded resumable data order (harness/train/sampler.py), the method's step hooks and the
training step's FLOP count (harness/flops.py).

Accelerate's wrappers are called once, where they do something: the model is unwrapped once (`Setup.unwrapped`), and the
training step calls AdamW itself where Accelerate's optimizer wrapper would only pass its calls on (`direct_optimizer`).
On every call both look up optional packages (and the wrapper's zero_grad inspects a signature): together about 0.5 ms
a step on CPU, 2–3 % of a tiny model's step (issue 18)."""
from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader

from harness import flops as flop_count
from harness.errors import ConfigError
from harness.train.config import TrainerConfig
from harness.train.sampler import ResumableShuffle, make_sampler
from harness.train.schedule import linear_warmup_decay


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


def direct_optimizer(accelerator, optimizer):
    """The optimizer the training step calls, at the end of each accumulation window only: AdamW itself where
    Accelerate's wrapper would pass the call straight on (no fp16 loss scaler; one device, or DDP on several), else the
    wrapper (fp16's scaled step, XLA, DeepSpeed)."""
    from accelerate.optimizer import AcceleratedOptimizer
    from accelerate.utils import DistributedType

    passes_on = (type(optimizer) is AcceleratedOptimizer and optimizer.scaler is None
                 and accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU,
                                                      DistributedType.MULTI_CPU))
    return optimizer.optimizer if passes_on else optimizer


@dataclass
class StepHooks:
    """A method's hooks in training, bound to its config (methods/__init__.py `Method`): `groups(model, lr,
    weight_decay)` → AdamW's parameter groups or None (the loop's own); `regularizer(model)` → a loss term or None;
    `after_step(model, step, total_steps)` after each real optimiser step, before zero_grad."""

    groups: Callable | None = None
    regularizer: Callable | None = None
    after_step: Callable | None = None


@dataclass
class Setup:
    """The prepared pieces of one training call: model, optimiser, schedule and the seeded, resumable data order."""

    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    loader: DataLoader
    sampler: ResumableShuffle
    generator: torch.Generator     # the training order, and nothing else
    loss_fn: Callable
    trainable: list                # the parameters that train, for gradient clipping
    steps_per_epoch: int
    total_steps: int
    epochs: int
    hooks: StepHooks
    unwrapped: torch.nn.Module     # the model without Accelerate's wrapping (DDP), for hooks, evaluation, checkpoints
    stepper: torch.optim.Optimizer  # what steps and zeroes the gradients (direct_optimizer)
    step_flops: flop_count.StepFlops | None = None   # a training step's FLOPs per sequence length (None: not counted)
    trained_at_eval: float = 0.0   # training seconds (the clock's) at the last evaluation: the epoch line's time

    def parts(self) -> dict:
        """What a checkpoint holds besides the training state: the unwrapped model, the optimizer, the scheduler."""
        return {"model": self.unwrapped, "optimizer": self.optimizer,
                "scheduler": self.scheduler}


def prepare(model, train_ds, tcfg: TrainerConfig, collate: Callable, seed: int, loss_fn: Callable | None,
            accelerator=None, hooks: StepHooks | None = None) -> Setup:
    accelerator = accelerator or make_accelerator(tcfg)
    loss_fn = loss_fn or (lambda m, batch: m(**batch).loss)
    generator = torch.Generator().manual_seed(seed)
    sampler = make_sampler(train_ds, tcfg.group_by_length, tcfg.batch_size, generator)
    loader = DataLoader(train_ds, batch_size=tcfg.batch_size, sampler=sampler, generator=generator, collate_fn=collate)
    steps_per_epoch = math.ceil(len(loader) / tcfg.grad_accum)
    total_steps = tcfg.max_steps or tcfg.epochs * steps_per_epoch
    # the method's own groups where it has them (LoRA+: B at λ·lr), else decay / no decay at one lr
    own = hooks.groups(model, tcfg.lr, tcfg.weight_decay) if hooks and hooks.groups else None
    optimizer = torch.optim.AdamW(own or param_groups(model, tcfg.weight_decay), lr=tcfg.lr)
    warmup = tcfg.warmup_steps if tcfg.warmup_steps is not None else round(tcfg.warmup_ratio * total_steps)
    scheduler = linear_warmup_decay(optimizer, warmup, total_steps)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(model)
    counted = flop_count.step_flops(unwrapped, loss_fn, collate, train_ds[0], accelerator.device)
    if accelerator.device.type == "cuda":  # after the FLOP count's probe steps
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    return Setup(accelerator, model, optimizer, scheduler, loader, sampler, generator, loss_fn,
                 [p for p in model.parameters() if p.requires_grad], steps_per_epoch, total_steps,
                 math.ceil(total_steps / steps_per_epoch), hooks or StepHooks(), unwrapped,
                 direct_optimizer(accelerator, optimizer), counted)
