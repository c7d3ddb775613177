"""LoRA, in-house (Hu et al., ICLR 2022, arXiv:2106.09685).

A frozen weight W₀ gets a trainable low-rank update: h = W₀x + (α/r)·B·A·x (paper eq. 3 and §4.1), A ∈ ℝ^{r×k} random
(Kaiming-uniform, as loralib; or Gaussian, as the paper's text), B ∈ ℝ^{d×r} zero, so training starts exactly from the base model. The
layer wraps the existing module (`base_layer`): nn.Linear, GPT-2's Conv1D (weight stored transposed, in×out), and fused
projections such as GPT-2's `c_attn` (q, k, v in one matrix), where only the chosen output slices are adapted, as the
paper adapts Wq and Wv only. For inference the update is merged into W₀ (no added latency, paper §4.1).
The LoRA family's variants are options of the same Config (methods/lora_variants.py: rsLoRA, LoRA+, PiSSA;
methods/dora.py: DoRA), named as methods of their own in methods/lora_family.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harness.train.checkpoint import trainable_state
from methods import lora_variants, register

INITS = ("gaussian", "kaiming", "pissa")
BIASES = ("none", "all", "lora_only")


@dataclass
class Config:
    r: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    init: str = "kaiming"
    targets: list = field(default_factory=lambda: ["q", "v"])
    layers: list | None = None
    bias: str = "none"
    merge_for_eval: bool = True
    scaling: str = "standard"    # standard: α/r | rslora: α/√r
    lr_ratio: float = 1.0        # LoRA+: B's learning rate over A's
    dora: bool = False           # DoRA: a trained magnitude per output feature
    # settings added after LoRA's first records, their defaults what those ran: reports read an absent one as it
    ADDED: ClassVar[tuple] = ("scaling", "lr_ratio", "dora")

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"r must be a positive integer, got {self.r!r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.bias not in BIASES:
            raise ValueError(f"bias must be one of {', '.join(BIASES)}, got {self.bias!r}")
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if not self.targets:
            raise ValueError("targets must name at least one weight type or module")
        self.targets = list(self.targets)
        self.layers = None if self.layers is None else [int(i) for i in self.layers]
        lora_variants.check(self)


def is_conv1d(module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")  # transformers.pytorch_utils.Conv1D


def _shape(module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_conv1d(module):
        return module.weight.shape[0], module.weight.shape[1]
    raise TypeError(f"LoRA wraps nn.Linear or Conv1D, not {type(module).__name__}")


class LoraLayer(nn.Module):
    """Wraps `base_layer`; `slices` lists the (start, size) output ranges adapted (all of it by default), one (A, B)
    pair per slice, stacked: A is (n·r)×k, B is (Σ sizes)×r."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0, init: str = "kaiming",
                 slices: list[tuple[int, int]] | None = None, scaling: str = "standard"):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = _shape(base_layer)
        self.slices = [tuple(s) for s in (slices or [(0, self.out_features)])]
        self.r, self.alpha, self.scaling = r, alpha, lora_variants.scale(alpha, r, scaling)
        weight = base_layer.weight
        self.lora_A = nn.Parameter(torch.empty(r * len(self.slices), self.in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(sum(n for _, n in self.slices), r, dtype=weight.dtype, device=weight.device))
        # Dropout on the LoRA input only; skipped entirely when p = 0 (no op in the graph).
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "kaiming"):
        with torch.no_grad():
            if init == "gaussian":
                # The paper: "random Gaussian initialization for A and zero for B"; it gives no σ. σ = 1/r is peft's
                # "gaussian" option. Under Adam each entry of B first moves by about ±lr whatever the gradient's size,
                # so the first update (α/r)·B·A·x is proportional to σ: σ = 1/r gives small ranks larger first steps
                # than an r-independent σ (kaiming, below) does, by a factor ∝ 1/r (tests/test_lora.py). At α = 8 and
                # lr 2e-3, r = 1 on q,k,v,o collapsed to one class with it (reports/lora_rank_cpu).
                nn.init.normal_(self.lora_A, std=1.0 / self.r)
            else:
                # The default: Kaiming-uniform with a = √5 (nn.Linear's default), bound = 1/√k, independent of r — what
                # the reference implementation loralib does (its `reset_parameters`) and peft's default. On MiniLM
                # SST-2 it kept r = 1 on q,k,v,o at 80.2 where the Gaussian σ = 1/r collapsed to chance
                # (reports/lora_rank_cpu).
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.lora_B.zero_()
        if init == "pissa":  # A, B from W's top singular directions, W keeps the residual (methods/lora_variants.py)
            lora_variants.pissa_init(self)

    def delta_weight(self) -> list[tuple[int, int, torch.Tensor]]:
        """(start, size, ΔW) per slice, ΔW = s·B·A in nn.Linear's out×in layout (s = α/r, or α/√r for rsLoRA)."""
        out, row = [], 0
        for i, (start, size) in enumerate(self.slices):
            a = self.lora_A[i * self.r:(i + 1) * self.r]
            b = self.lora_B[row:row + size]
            out.append((start, size, (b @ a) * self.scaling))
            row += size
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        # The update is accumulated into the base output in place (addmm_ with α/r as its alpha): no out × tokens
        # temporary for B·A·x, and nothing saved for backward but x, the r-dimensional hidden and A, B. The base
        # layer's output is not needed by its own backward (its weight is frozen), so writing into it is safe.
        hidden = F.linear(self.lora_dropout(x), self.lora_A)
        result = result.contiguous()  # a no-op for nn.Linear and Conv1D outputs
        flat, hidden = result.view(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]).to(result.dtype)
        row = 0
        for i, (start, size) in enumerate(self.slices):
            h = hidden if len(self.slices) == 1 else hidden[:, i * self.r:(i + 1) * self.r]
            out = flat if (start, size) == (0, self.out_features) else flat[:, start:start + size]
            out.addmm_(h, self.lora_B[row:row + size].t().to(result.dtype), alpha=self.scaling)  # autocast: bf16
            row += size
        return result

    @torch.no_grad()
    def merge(self):
        """W₀ ← W₀ + (α/r)·BA. The replaced slices are kept, so `unmerge()` restores W₀ bit for bit (subtracting the
        update again would not be exact in floating point, and repeated evaluations would drift the frozen weight)."""
        if self.merged:
            return
        updates = self.delta_weight()
        if not all(torch.isfinite(delta).all() for _, _, delta in updates):
            raise ValueError("LoRA update has non-finite values; refusing to merge it into the base weight")
        self._saved = []
        for i, (start, size, delta) in enumerate(updates):
            weight = self.weight_rows(start, size)
            self._saved.append(weight.clone())
            weight.copy_(self.merged_rows(i, weight, delta).to(weight.dtype))
        self.merged = True

    def merged_rows(self, i: int, weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Slice i's weight with its update merged: W₀ + ΔW (DoRA rescales it, methods/dora.py)."""
        return weight + delta

    @torch.no_grad()
    def unmerge(self):
        if not self.merged:
            return
        for (start, size), saved in zip(self.slices, self._saved):
            self.weight_rows(start, size).copy_(saved)
        self._saved = None
        self.merged = False

    def weight_rows(self, start: int, size: int) -> torch.Tensor:
        """The base weight's output rows start:start+size in nn.Linear's out×in layout: a view (of Conv1D's columns,
        transposed: it stores the weight in×out)."""
        weight = self.base_layer.weight
        return weight[:, start:start + size].T if is_conv1d(self.base_layer) else weight[start:start + size]

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, slices={self.slices}, merged={self.merged}"


def lora_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _set_module(model: nn.Module, name: str, new: nn.Module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def plan(model: nn.Module, cfg: Config, info) -> dict[str, list[tuple[int, int]] | None]:
    """Module name → adapted output slices (None: the whole module). Weight types on a fused projection listed in the
    model yaml's `fused` map (e.g. GPT-2 `attn.c_attn: [q, k, v]`) become slices of it."""
    from transformers.pytorch_utils import Conv1D

    chosen: dict[str, set] = {}
    for target in cfg.targets:
        for name in info.find(model, [target], cfg.layers, types=(nn.Linear, Conv1D)):
            chosen.setdefault(name, set()).add(target)
    result = {}
    for name, types in chosen.items():
        parts = info.fused_parts(name)
        if parts and types <= set(parts):
            width = _shape(model.get_submodule(name))[1] // len(parts)
            result[name] = [(parts.index(t) * width, width) for t in sorted(types, key=parts.index)]
        else:
            result[name] = None
    return result


def inject(model: nn.Module, cfg: Config, info) -> dict:
    layout = plan(model, cfg, info)
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.dora:
        from methods.dora import DoraLayer as layer_class   # DoRA subclasses LoraLayer: imported once it exists
    else:
        layer_class = LoraLayer
    for name, slices in layout.items():
        base = model.get_submodule(name)
        _set_module(model, name, layer_class(base, cfg.r, cfg.alpha, cfg.dropout, cfg.init, slices, cfg.scaling))
    for module in lora_layers(model):
        if cfg.bias == "lora_only" and getattr(module.base_layer, "bias", None) is not None:
            module.base_layer.bias.requires_grad_(True)
    if cfg.bias == "all":
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.requires_grad_(True)
    return layout


def unwrap_merged(model: nn.Module) -> list[tuple[str, LoraLayer]]:
    """Merge every LoRA layer and put its base layer (now W₀ + (α/r)·BA) in its place; returns (name, wrapper) pairs
    so that a caller can put the wrappers back and unmerge."""
    places = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in places:
        layer.merge()
        _set_module(model, name, layer.base_layer)
    return places


@contextlib.contextmanager
def merged(model: nn.Module, cfg: Config | None = None):
    """Evaluate with the update merged into W₀ (`method.merge_for_eval=true`, the default), then restore. While
    merged, each wrapper is also taken out of the model (its base layer, holding W₀ + (α/r)·BA, put back in its
    place), so that the evaluated model is the base architecture itself: no added latency, not even a Python call."""
    places = unwrap_merged(model) if cfg is None or cfg.merge_for_eval else []
    try:
        yield model
    finally:
        for name, layer in places:
            _set_module(model, name, layer)
            layer.unmerge()


def count(cfg: Config, info, model: nn.Module) -> int:
    """Trainable LoRA parameters: r·(k + d) per adapted matrix or slice — the paper's 2·L̂·d·r when k = d — plus, with
    DoRA, the d magnitudes of each."""
    total = 0
    for name, slices in plan(model, cfg, info).items():
        k, d = _shape(model.get_submodule(name))
        total += sum(cfg.r * (k + size) + (size if cfg.dora else 0) for _, size in (slices or [(0, d)]))
    return total


def save_adapter(model, cfg: Config, info, folder) -> Path:
    """The method's artifact: only what trains (LoRA matrices, the task head, biases when asked) as safetensors, and
    the config and layout needed to rebuild the layers (methods/lora_io.py loads it back and exports it)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.contiguous() for name, tensor in trainable_state(model).items()}
    save_file({**state, **pissa_initial(model)}, str(folder / "adapter.safetensors"))
    layout = {name: module.slices for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    meta = {"method": "lora", "model": info.name, "config": dataclasses.asdict(cfg), "layout": layout}
    (folder / "adapter_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def pissa_initial(model) -> dict:
    """PiSSA's initial factors (A₀, B₀) of every layer that has them, as `<layer>.pissa_A0` / `.pissa_B0`."""
    return {f"{name}.{key}": getattr(m, key).detach().cpu().contiguous() for name, m in model.named_modules()
            if isinstance(m, LoraLayer) for key in lora_variants.PISSA_KEYS if hasattr(m, key)}


@register("lora", Config, eval_context=merged, save=save_adapter, size_param="r", count=count,
          optimizer_groups=lora_variants.optimizer_groups)
def apply(model, cfg: Config, info):
    inject(model, cfg, info)
    return model
