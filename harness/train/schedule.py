"""The learning-rate schedule: linear warm-up from 0 to the optimiser's rate over the first `warmup` steps, then linear
decay to 0 at step `total` (BERT's and RoBERTa's fine-tuning schedule, which the LoRA paper's GLUE and E2E recipes
use). Written here rather than taken from transformers.optimization, whose import pulls in peft (transformers'
trainer_utils imports it whenever it is installed): a run that trains no peft method should not pay for it."""
from __future__ import annotations

import torch


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose factor at step s is s / warmup while s < warmup, then (total − s) / (total − warmup), never
    below 0. Its state_dict holds no function, so checkpoints written with transformers' equivalent load into it."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
