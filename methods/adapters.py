"""Bottleneck adapters, the four variants the LoRA paper compares against (Hu et al. 2022, §5.1):

    adapter_h  AdapterH, Houlsby et al. 2019: after the attention output projection and after the feed-forward output
               projection (before each residual + LayerNorm); the model's LayerNorms train too (Houlsby §2.1).
    adapter_p  AdapterP, Pfeiffer et al. 2021 (AdapterFusion): after the feed-forward output projection only.
    adapter_l  AdapterL, Lin et al. 2020: after the whole feed-forward block, with its own LayerNorm in front.
    adapter_d  AdapterD, Rücklé et al. 2021 (AdapterDrop): AdapterP with the adapters of the lowest layers dropped.

An adapter is x + W_up·f(W_down·x + b_down) + b_up (W_down: r×d, W_up: d×r), inserted by wrapping an existing module
(`Adapted` calls the original, then the adapter); the model's code is never edited. W_up starts at zero, so the adapted
model starts exactly equal to the base model (Houlsby's "near-identity" init made exact, as LoRA's B = 0); W_down keeps
nn.Linear's Kaiming-uniform init so the first update of W_up already sees a non-trivial hidden, as in He et al. 2022.

Trainable parameters, the paper's formula: L̂·(2·d·r + r + d) + 2·L̂_LN·d (L̂ adapters, L̂_LN trained LayerNorms: the
model's for AdapterH, the adapters' own for AdapterL, none for AdapterP/D). Modules are found through the model yaml's
`modules` map (attn_out, ffn_out, ffn_block, norms), never by hard-coded names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.errors import ConfigError
from methods import register

NONLINEARITIES = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}


@dataclass
class Config:
    r: int = 16                  # bottleneck width
    nonlinearity: str = "relu"
    layers: list | None = None   # layer indices that get adapters (None: all)

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"r must be > 0, got {self.r!r}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {self.nonlinearity!r}")
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]
            if not self.layers or min(self.layers) < 0:
                raise ValueError(f"layers must be a non-empty list of indices ≥ 0 (or null), got {self.layers!r}")


@dataclass
class DropConfig(Config):
    drop_lowest: int = 2         # AdapterDrop: the lowest layers that get no adapter

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.drop_lowest, int) or isinstance(self.drop_lowest, bool) or self.drop_lowest < 0:
            raise ValueError(f"drop_lowest must be an integer ≥ 0, got {self.drop_lowest!r}")


@dataclass(frozen=True)
class Placement:
    """Where a variant's adapters sit and which LayerNorms train with them."""

    sites: tuple[str, ...]       # keys of ModelInfo.modules whose modules get wrapped
    model_norms: bool = False    # train the model's own LayerNorms in the adapted layers
    own_norm: bool = False       # a LayerNorm (trainable) in front of each bottleneck


PLACEMENTS = {
    "adapter_h": Placement(("attn_out", "ffn_out"), model_norms=True),
    "adapter_p": Placement(("ffn_out",)),
    "adapter_l": Placement(("ffn_block",), own_norm=True),
    "adapter_d": Placement(("ffn_out",)),
}


class Bottleneck(nn.Module):
    def __init__(self, d: int, r: int, nonlinearity: str = "relu", norm: bool = False, *, like: torch.Tensor | None = None):
        super().__init__()
        kw = {"device": like.device, "dtype": like.dtype} if like is not None else {}
        self.norm = nn.LayerNorm(d, **kw) if norm else nn.Identity()
        self.down = nn.Linear(d, r, **kw)
        self.act = NONLINEARITIES[nonlinearity]()
        self.up = nn.Linear(r, d, **kw)
        with torch.no_grad():
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(self.norm(x))))


class Adapted(nn.Module):
    """`base_layer` followed by `adapter` on its output (the first element, if the module returns a tuple)."""

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base_layer, self.adapter = base_layer, adapter

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        if isinstance(out, tuple):
            return (self.adapter(out[0]),) + out[1:]
        return self.adapter(out)


def adapted_layers(cfg: Config, info) -> list[int]:
    layers = list(range(info.num_layers)) if cfg.layers is None else cfg.layers
    if max(layers) >= info.num_layers:
        raise ConfigError(f"method.layers={cfg.layers} names a layer ≥ num_layers={info.num_layers} of {info.name}")
    drop = getattr(cfg, "drop_lowest", 0)
    kept = [i for i in layers if i >= drop]
    if not kept:
        raise ConfigError(f"method.drop_lowest={drop} leaves no layer with an adapter ({info.name} has "
                          f"{info.num_layers} layers, method.layers={cfg.layers})")
    return kept


def _find(model, info, key: str, layers: list[int]) -> list[str]:
    if key not in info.modules:
        raise ConfigError(f"model {info.name} has no `modules.{key}` in its yaml (needed by adapters); "
                          f"it has: {', '.join(sorted(info.modules)) or 'none'}")
    return info.find(model, [key], layers, types=None)


def inject(model: nn.Module, cfg: Config, info, placement: Placement) -> list[str]:
    """Freeze the model, wrap each site with an adapter, unfreeze what the placement trains; returns the wrapped names."""
    layers = adapted_layers(cfg, info)
    for p in model.parameters():
        p.requires_grad_(False)
    names = [name for key in placement.sites for name in _find(model, info, key, layers)]
    for name in names:
        base = model.get_submodule(name)
        like = next(base.parameters())
        parent, _, child = name.rpartition(".")
        adapter = Bottleneck(info.d_model, cfg.r, cfg.nonlinearity, placement.own_norm, like=like)
        setattr(model.get_submodule(parent), child, Adapted(base, adapter))
    if placement.model_norms:
        for name in _find(model, info, "norms", layers):
            model.get_submodule(name).requires_grad_(True)
    return names


def count(cfg: Config, info, model: nn.Module, placement: Placement) -> int:
    """L̂·(2·d·r + r + d) + 2·L̂_LN·d; the model's own norms are counted as they are (2·d each for a LayerNorm)."""
    layers = adapted_layers(cfg, info)
    d, r = info.d_model, cfg.r
    n_adapters = len(layers) * len(placement.sites)
    total = n_adapters * (2 * d * r + r + d) + (n_adapters * 2 * d if placement.own_norm else 0)
    if placement.model_norms:
        total += sum(p.numel() for name in _find(model, info, "norms", layers)
                     for p in model.get_submodule(name).parameters())
    return total


def _register(name: str, placement: Placement):
    def apply(model, cfg, info):
        inject(model, cfg, info, placement)
        return model

    def count_placement(cfg, info, model):
        return count(cfg, info, model, placement)

    register(name, DropConfig if name == "adapter_d" else Config, size_param="r", count=count_placement)(apply)


for _name, _placement in PLACEMENTS.items():
    _register(_name, _placement)
