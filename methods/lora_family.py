"""The LoRA family as methods of their own: LoRA (methods/lora.py) with one option set, so that reports, W&B and the
claim scorecard name and order them apart from plain LoRA (each has its yaml in conf/method/ with its label):

    rslora      scaling=rslora       α/√r (Kalajdzievski 2023)
    lora_plus   lr_ratio=λ > 1       B at λ times A's learning rate (Hayou et al. 2024)
    pissa       init=pissa           A, B from W's top singular directions (Meng et al. 2024)
    dora        dora=true            a trained magnitude per output feature (Liu et al. 2024)

Everything else — layers, merge, budget count, artifact, export — is LoRA's; `method=lora method.dora=true` trains the
same model, only labelled LoRA. Options combine (`method=dora method.scaling=rslora`).
"""
from __future__ import annotations

import dataclasses

from methods import lora, lora_variants, register

# method → (the option it sets, its default there, the values it accepts, those values in words). λ = 2⁴ is Hayou et
# al.'s recommendation for LoRA+.
FAMILY = {
    "rslora": ("scaling", "rslora", lambda v: v == "rslora", "rslora"),
    "lora_plus": ("lr_ratio", 16.0, lambda v: v > 1, "a ratio > 1"),
    "pissa": ("init", "pissa", lambda v: v == "pissa", "pissa"),
    "dora": ("dora", True, lambda v: v is True, "true"),
}


def preset_config(name: str) -> type:
    """lora.Config with the method's option as its default, refusing a value that would make it another method."""
    key, default, accepts, wanted = FAMILY[name]

    def __post_init__(self):
        lora.Config.__post_init__(self)
        if not accepts(getattr(self, key)):
            raise ValueError(f"method {name} is LoRA with {key}={wanted}; use method=lora for LoRA without it")

    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Config",
                                      [(key, type(default), dataclasses.field(default=default))],
                                      bases=(lora.Config,), namespace={"__post_init__": __post_init__})


for _name in FAMILY:
    register(_name, preset_config(_name), eval_context=lora.merged, save=lora.save_adapter, size_param="r",
             count=lora.count, optimizer_groups=lora_variants.optimizer_groups)(lora.apply)
