"""peft's LoRA, kept only as a reference to compare the in-house LoRA against (same r, α, dropout, targets, init), and
its LoRA family: `scaling=rslora` → use_rslora, `init=pissa` → init_lora_weights="pissa", `dora=true` → use_dora,
`lr_ratio=λ` → the groups of peft.optimizers.create_loraplus_optimizer."""
from __future__ import annotations

import contextlib

from methods import register
from methods.lora import Config, count, plan

PEFT_INITS = {"gaussian": "gaussian", "kaiming": True, "pissa": "pissa"}


@contextlib.contextmanager
def _merged(model, cfg: Config):
    if not cfg.merge_for_eval:
        yield model
        return
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()


def _loraplus_groups(model, cfg: Config, lr: float, weight_decay: float):
    """peft's LoRA+ parameter groups (B and every 1-D parameter at lr·λ), with our weight decay on A and B."""
    if cfg.lr_ratio == 1:
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=cfg.lr_ratio,
                                          loraplus_weight_decay=weight_decay)
    return [{"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]}
            for g in optimizer.param_groups if g["params"]]


@register("lora_peft", Config, eval_context=_merged, size_param="r", count=count, optimizer_groups=_loraplus_groups)
def apply(model, cfg: Config, info):
    from peft import LoraConfig, get_peft_model

    layout = plan(model, cfg, info)
    if any(slices is not None for slices in layout.values()):
        raise ValueError("lora_peft cannot adapt slices of a fused projection; target whole modules instead")
    peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=sorted(layout),
                          bias=cfg.bias, init_lora_weights=PEFT_INITS[cfg.init], use_rslora=cfg.scaling == "rslora",
                          use_dora=cfg.dora)
    return get_peft_model(model, peft_cfg)
