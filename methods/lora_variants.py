"""The LoRA family's small changes to LoRA (methods/lora.py), as options of its Config:

    scaling=rslora   rsLoRA (Kalajdzievski 2023, arXiv:2312.03732): the update is scaled by α/√r instead of α/r, the
                     factor that keeps the update's size stable as r grows, so larger ranks keep learning
    lr_ratio=λ       LoRA+ (Hayou et al. 2024, arXiv:2402.12354): B trains at λ times A's learning rate (λ = 2⁴
                     their recommendation), through the registry's `optimizer_groups` hook
    init=pissa       PiSSA (Meng et al. 2024, arXiv:2404.02948): A, B start as the top-r singular directions of W and
                     W keeps only the residual, so the model starts equal to the base model
    dora=true        DoRA (Liu et al. 2024, arXiv:2402.09353): methods/dora.py

Nothing here imports methods.lora (which imports this module); a layer is anything with LoraLayer's attributes."""
from __future__ import annotations

import math

import torch

SCALINGS = ("standard", "rslora")
PISSA_KEYS = ("pissa_A0", "pissa_B0")   # a PiSSA layer's initial factors (buffers), also keys of its saved adapter


def check(cfg) -> None:
    """The variant options of a LoRA Config; a bad value is a ValueError naming the key and the valid choices."""
    if cfg.scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {cfg.scaling!r}")
    if isinstance(cfg.lr_ratio, bool) or not isinstance(cfg.lr_ratio, (int, float)) or not cfg.lr_ratio > 0:
        raise ValueError(f"lr_ratio must be a number > 0 (B's learning rate over A's; 1 = plain LoRA), got "
                         f"{cfg.lr_ratio!r}")
    if not isinstance(cfg.dora, bool):
        raise ValueError(f"dora must be true or false, got {cfg.dora!r}")


def scale(alpha: float, r: int, scaling: str = "standard") -> float:
    """The factor on B·A: α/r (the LoRA paper, eq. 3 and §4.1), or α/√r (rsLoRA: Kalajdzievski 2023 shows that α/r
    shrinks the update as r grows, so that high ranks learn no faster than low ones — "gradient collapse" — and that
    1/√r is the scaling under which the update stays of order one at every r)."""
    return alpha / math.sqrt(r) if scaling == "rslora" else alpha / r


# --- PiSSA ---------------------------------------------------------------------------------------------------------

def pissa_factors(weight: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A₀, B₀) from the top-r singular triplets of `weight` (out×in): W = U S Vᵀ, A₀ = diag(√(S_r/s)) V_rᵀ,
    B₀ = U_r diag(√(S_r/s)), so that s·B₀A₀ = U_r S_r V_rᵀ, W's best rank-r part (Meng et al. 2024; the
    division by the scaling s keeps that product exact whatever α and r are). Computed in float32."""
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    root = torch.sqrt(s[:r] / scaling)
    return root[:, None] * vh[:r], u[:, :r] * root[None, :]


def pissa_init(layer) -> None:
    """PiSSA's start: A, B ← (A₀, B₀) of each adapted slice's weight, and W ← W − s·B₀A₀ (the residual stays frozen),
    so W_res + s·B·A equals W at step 0. A meta-device skeleton (start-up validation) has nothing to factor."""
    if layer.base_layer.weight.is_meta:
        return
    factors = [pissa_factors(layer.weight_rows(start, size), layer.r, layer.scaling) for start, size in layer.slices]
    initial_a = torch.cat([a for a, _ in factors]).to(layer.lora_A.dtype)
    initial_b = torch.cat([b for _, b in factors]).to(layer.lora_B.dtype)
    with torch.no_grad():
        layer.lora_A.copy_(initial_a)
        layer.lora_B.copy_(initial_b)
    subtract_initial(layer, initial_a, initial_b)


@torch.no_grad()
def subtract_initial(layer, initial_a: torch.Tensor, initial_b: torch.Tensor) -> None:
    """W ← W − s·B₀A₀ per slice, keeping (A₀, B₀) as the layer's buffers `pissa_A0`, `pissa_B0` (not in the model's
    state dict): the saved adapter carries them, so that loading it rebuilds the same residual without an SVD and an
    export can express the trained update relative to the original W (methods/lora_io.py)."""
    for key, value in zip(PISSA_KEYS, (initial_a, initial_b)):
        layer.register_buffer(key, value.detach().clone(), persistent=False)
    row = 0
    for i, (start, size) in enumerate(layer.slices):
        a, b = initial_a[i * layer.r:(i + 1) * layer.r], initial_b[row:row + size]
        weight = layer.weight_rows(start, size)
        weight -= (layer.scaling * (b.float() @ a.float())).to(weight.dtype)
        row += size


# --- LoRA+ ---------------------------------------------------------------------------------------------------------

def optimizer_groups(model, cfg, lr: float, weight_decay: float) -> list[dict] | None:
    """LoRA+'s AdamW groups: every LoRA B at lr·λ, everything else (A, the task head, biases, DoRA's magnitudes) at lr,
    each with the harness's weight-decay rule (harness/train/loop.py param_groups: no decay on 1-D tensors). None
    for λ = 1 (the loop's own groups). The paper sets η_B = λ·η_A for the B matrices only; peft's
    create_loraplus_optimizer also gives every 1-D parameter (biases, LayerNorms) B's rate — we do not
    (tests/test_lora_variants.py shows both)."""
    if cfg.lr_ratio == 1:
        return None
    from harness.train.setup import param_groups

    fast = {id(p) for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == "lora_B"}
    groups = []
    for group in param_groups(model, weight_decay):
        for ratio in (1.0, cfg.lr_ratio):
            params = [p for p in group["params"] if (id(p) in fast) == (ratio != 1.0)]
            if params:
                groups.append({**group, "params": params, "lr": lr * ratio})
    return groups
