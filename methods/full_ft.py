"""Full fine-tuning: every parameter trains (the paper's FT baseline)."""
from dataclasses import dataclass

from methods import register


@dataclass
class Config:
    pass


@register("full_ft", Config)
def apply(model, cfg, info):
    for p in model.parameters():
        p.requires_grad_(True)
    return model
