"""DoRA, weight-decomposed low-rank adaptation (Liu et al., ICML 2024, arXiv:2402.09353): `method.dora=true` on LoRA.

The adapted weight is split into a magnitude and a direction, W' = m ⊙ (W₀ + s·B·A) / ‖W₀ + s·B·A‖ (paper eq. 5), the
norm taken per output feature (over each row of W's out×in layout: the paper's column norm of its d×k, k-output
weight). m, one value per output feature, trains with A and B and starts at ‖W₀‖, so that with B = 0 the model starts
equal to the base model. The norm is treated as a constant in backpropagation (paper §4.3: it still follows ΔW, but
gets no gradient), which peft does too. The update is mergeable: W' is one matrix (`merged_rows`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.lora import LoraLayer, is_conv1d


class DoraLayer(LoraLayer):
    """A LoraLayer with `lora_magnitude` (one value per adapted output feature, all slices stacked)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weight = self.base_layer.weight
        self.lora_magnitude = nn.Parameter(torch.empty(sum(n for _, n in self.slices), dtype=weight.dtype,
                                                       device=weight.device))
        if not weight.is_meta:  # a meta-device skeleton (start-up validation) has no values
            with torch.no_grad():
                self.lora_magnitude.copy_(self.weight_norm())  # ‖W₀ + s·B·A‖: ‖W₀‖ (B = 0), or ‖W‖ after PiSSA

    @torch.no_grad()
    def weight_norm(self) -> torch.Tensor:
        """‖W₀ + s·B·A‖ per adapted output feature, without gradient (paper §4.3)."""
        return torch.cat([torch.linalg.norm(self.weight_rows(start, size) + delta.to(self.base_layer.weight.dtype),
                                            dim=1) for start, size, delta in self.delta_weight()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        # m/‖W′‖ ⊙ (W₀x + s·BAx) + b = result + (g − 1) ⊙ W₀x + g ⊙ s·BAx with g = m / ‖W₀ + s·BA‖. With dropout
        # active, both terms read the dropped input (as the DoRA authors' code and peft do), W₀x with it recomputed.
        dropped = self.lora_dropout(x)
        bias = self.base_layer.bias
        if dropped is x or not self.training:
            plain = result - bias if bias is not None else result
        else:
            weight = self.base_layer.weight
            plain = F.linear(dropped, weight.T if is_conv1d(self.base_layer) else weight)
        gain = (self.lora_magnitude / self.weight_norm()).to(result.dtype)
        hidden = F.linear(dropped, self.lora_A).to(result.dtype)
        pieces, row = [], 0
        for i, (start, size) in enumerate(self.slices):
            g = gain[row:row + size]
            update = F.linear(hidden[..., i * self.r:(i + 1) * self.r], self.lora_B[row:row + size].to(result.dtype))
            out = slice(start, start + size)
            pieces.append((out, result[..., out] + (g - 1) * plain[..., out] + g * (self.scaling * update)))
            row += size
        if len(pieces) == 1 and self.slices[0] == (0, self.out_features):
            return pieces[0][1]
        result = result.clone()
        for out, value in pieces:
            result[..., out] = value
        return result

    def merged_rows(self, i: int, weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """m ⊙ (W₀ + ΔW) / ‖W₀ + ΔW‖ for slice i: the weight DoRA's forward applies, as one matrix."""
        start = sum(size for _, size in self.slices[:i])
        magnitude = self.lora_magnitude[start:start + self.slices[i][1]].detach()
        combined = weight + delta
        return (magnitude / torch.linalg.norm(combined, dim=1))[:, None] * combined

    def extra_repr(self) -> str:
        return super().extra_repr() + ", dora=True"
