"""BitFit (Ben Zaken et al., 2022): only the bias terms train (every bias, LayerNorm's included), plus the task head."""
from dataclasses import dataclass

from methods import register


@dataclass
class Config:
    pass


@register("bitfit", Config)
def apply(model, cfg, info):
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(".bias") or name == "bias")
    return model
