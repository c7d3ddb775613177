"""peft's LoRA, kept only as a reference to compare the in-house LoRA against (same r, α, dropout, targets, init)."""
from __future__ import annotations

import contextlib

from methods import register
from methods.lora import Config, count, plan


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


@register("lora_peft", Config, eval_context=_merged, size_param="r", count=count)
def apply(model, cfg: Config, info):
    from peft import LoraConfig, get_peft_model

    layout = plan(model, cfg, info)
    if any(slices is not None for slices in layout.values()):
        raise ValueError("lora_peft cannot adapt slices of a fused projection; target whole modules instead")
    peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=sorted(layout),
                          bias=cfg.bias, init_lora_weights="gaussian" if cfg.init == "gaussian" else True)
    return get_peft_model(model, peft_cfg)
