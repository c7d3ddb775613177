"""AdaLoRA, in-house (Zhang et al., ICLR 2023, "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning",
arXiv:2303.10512): LoRA whose rank budget is moved, during training, to the matrices that matter.

Each adapted W₀ gets its update in SVD form, ΔW = (α/r₀)·P·Λ·Q (paper eq. 3), as peft and the authors' loralib name
the parts: `lora_B` is P (d₁×r₀, left singular vectors), `lora_E` holds Λ's diagonal λ (r₀×1), `lora_A` is Q (r₀×d₂,
right singular vectors); r₀ = `init_r`. λ starts at zero, so training starts exactly from the base model; P and Q are
N(0, 0.02²) (paper §3.1; σ as in the authors' code and peft). The layer is a `LoraLayer` (methods/lora.py) with its own
update: the merge for evaluation and the exact unmerge are LoRA's.

Training (the two training hooks of methods/__init__.py `Method`; the pruning itself is methods/adalora_budget.py):
- `regularizer`: γ·mean over every P and Q of ‖PᵀP − I‖_F and ‖QQᵀ − I‖_F, keeping P and Q near-orthogonal so that
  λ behaves as singular values (paper eq. 4 writes squared norms summed; the authors' code and peft take the mean of
  the plain Frobenius norms, which we follow: tests/test_adalora.py checks it against peft and a closed form);
- `after_step`, after each optimiser step (the gradients are still there): importance of every triplet (P_i, λ_i, Q_i)
  from the sensitivity |w·∂L/∂w| of its entries, smoothed (β₁) and its uncertainty (β₂) (eqs. 5–7), then the lowest
  triplets' λ are masked to the cubic budget b(t) (eqs. 8–9) every `delta_t` steps between `tinit` and T − `tfinal`;
  the last allocation (b(T) = target_r × matrices) is fixed for the remaining `tfinal` steps.

Where peft differs, by design (each tested in tests/test_adalora.py): the scale is α/r₀ (peft divides by r₀ + 10⁻⁵, a
guard for r₀ = 0 that moves outputs by ~10⁻⁶ relative); steps are numbered 1 … T as the loop counts them, and the
schedule itself flags the final allocation at T − t_f (peft's model forces it outside its schedule); `tinit` / `tfinal`
may be fractions of the run; AdaLoRA does not adapt slices of a fused projection (GPT-2's q, v in `c_attn`): target the
whole module.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.train.checkpoint import trainable_state
from methods import register
from methods.adalora_budget import allocate, budget, schedule_steps
from methods.lora import LoraLayer, _set_module, _shape, merged, plan

log = logging.getLogger("harness")
SIGMA = 0.02   # P, Q ~ N(0, σ²): the authors' loralib and peft


@dataclass
class Config:
    target_r: int = 8             # b(T) = target_r × adapted matrices: the average final rank
    init_r: int | None = None     # r₀ per matrix; null: ⌈1.5·target_r⌉ (the paper's b(0) = 1.5·b(T))
    alpha: float = 8.0            # ΔW = (α/r₀)·PΛQ
    dropout: float = 0.0
    targets: list = field(default_factory=lambda: ["q", "k", "v", "o", "mlp"])
    layers: list | None = None
    tinit: float = 0.1            # steps before any pruning: an int is steps, a float in [0, 1) a fraction of the run
    tfinal: float = 0.7           # the last steps, at the final budget (int or fraction, as tinit)
    delta_t: int = 1              # steps between two allocations (peft: deltaT)
    beta1: float = 0.85           # EMA of the sensitivity (eq. 5)
    beta2: float = 0.85           # EMA of its uncertainty (eq. 6)
    orth_reg_weight: float = 0.1  # γ of the orthogonality regulariser (the paper's GLUE value)
    merge_for_eval: bool = True

    def __post_init__(self):
        for key in ("target_r", "init_r", "delta_t"):
            value = getattr(self, key)
            if not (value is None and key == "init_r") and (not isinstance(value, int) or isinstance(value, bool)
                                                            or value <= 0):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        for key in ("beta1", "beta2"):
            if not 0 < getattr(self, key) < 1:
                raise ValueError(f"{key} must be in (0, 1), got {getattr(self, key)!r}")
        if self.alpha <= 0 or self.orth_reg_weight < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"need alpha > 0, orth_reg_weight ≥ 0, dropout in [0, 1); got {self.alpha!r}, "
                             f"{self.orth_reg_weight!r}, {self.dropout!r}")
        schedule_steps(self, None)   # tinit / tfinal: steps or fractions, checked here
        self.targets = [self.targets] if isinstance(self.targets, str) else list(self.targets)
        if not self.targets:
            raise ValueError("targets must name at least one weight type or module")
        self.layers = None if self.layers is None else [int(i) for i in self.layers]

    @property
    def rank(self) -> int:
        """r₀, the initial rank of every adapted matrix."""
        return self.init_r if self.init_r is not None else math.ceil(1.5 * self.target_r)


class SVDLayer(LoraLayer):
    """Wraps `base_layer` (nn.Linear or Conv1D, whole) with ΔW = (α/r₀)·P·diag(λ)·Q. Buffers keep the allocation's
    state: the smoothed sensitivity (`ipt_*`) and uncertainty (`unc_*`) of every entry of Q, λ, P, and `keep`, the
    triplets the last allocation kept; `training_buffers` names them so that checkpoints save them (resume is exact)."""

    training_buffers = ("ipt_A", "ipt_E", "ipt_B", "unc_A", "unc_E", "unc_B", "keep")

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0):
        super().__init__(base_layer, r, alpha, dropout)   # lora_A: Q (r×k), lora_B: P (d×r); scaling α/r
        self.lora_E = nn.Parameter(torch.zeros(r, 1, dtype=self.lora_A.dtype, device=self.lora_A.device))
        for part in "AEB":
            weight = getattr(self, f"lora_{part}")
            self.register_buffer(f"ipt_{part}", torch.zeros_like(weight, requires_grad=False))
            self.register_buffer(f"unc_{part}", torch.zeros_like(weight, requires_grad=False))
        self.register_buffer("keep", torch.ones(r, dtype=torch.bool, device=self.lora_A.device))

    def reset_parameters(self, init: str | None = None):
        """P, Q ~ N(0, 0.02²), λ = 0 (paper §3.1): ΔW = 0 at the start."""
        with torch.no_grad():
            nn.init.normal_(self.lora_A, std=SIGMA)
            nn.init.normal_(self.lora_B, std=SIGMA)
            if "lora_E" in self._parameters:
                self.lora_E.zero_()

    def delta_weight(self) -> list[tuple[int, int, torch.Tensor]]:
        """[(0, d, ΔW)] in nn.Linear's out×in layout, as LoraLayer's merge takes it."""
        return [(0, self.out_features, (self.lora_B * self.lora_E.T) @ self.lora_A * self.scaling)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        hidden = F.linear(self.lora_dropout(x), self.lora_A) * self.lora_E.view(-1)
        return result + (F.linear(hidden, self.lora_B) * self.scaling).to(result.dtype)

    @torch.no_grad()
    def update_importance(self, beta1: float, beta2: float) -> None:
        """Ī ← β₁Ī + (1−β₁)I and Ū ← β₂Ū + (1−β₂)|I − Ī| per entry, I = |w·∂L/∂w| (paper eqs. 5–6)."""
        for part in "AEB":
            weight = getattr(self, f"lora_{part}")
            if weight.grad is None:
                continue
            sensitivity = (weight * weight.grad).abs()
            ipt, unc = getattr(self, f"ipt_{part}"), getattr(self, f"unc_{part}")
            ipt.copy_(beta1 * ipt + (1 - beta1) * sensitivity)
            unc.copy_(beta2 * unc + (1 - beta2) * (sensitivity - ipt).abs())

    def scores(self) -> torch.Tensor:
        """S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji), s = Ī·Ū (paper eq. 7): one score per triplet."""
        score = {part: getattr(self, f"ipt_{part}") * getattr(self, f"unc_{part}") for part in "AEB"}
        return score["E"].view(-1) + (score["A"].mean(dim=1) + score["B"].mean(dim=0))

    @torch.no_grad()
    def apply_keep(self) -> None:
        """λ_i ← 0 for every triplet the allocation did not keep."""
        self.lora_E.masked_fill_(~self.keep.view(-1, 1), 0.0)

    def orthogonality(self) -> list[torch.Tensor]:
        """‖QQᵀ − I‖_F and ‖PᵀP − I‖_F."""
        eye = torch.eye(self.r, dtype=self.lora_A.dtype, device=self.lora_A.device)
        return [torch.linalg.matrix_norm(self.lora_A @ self.lora_A.T - eye),
                torch.linalg.matrix_norm(self.lora_B.T @ self.lora_B - eye)]


def svd_layers(model: nn.Module) -> list[SVDLayer]:
    return [m for m in model.modules() if isinstance(m, SVDLayer)]


def _layout(model: nn.Module, cfg: Config, info) -> list[str]:
    """The adapted module names (LoRA's target matching); slices of a fused projection are refused: AdaLoRA ranks
    whole matrices."""
    layout = plan(model, cfg, info)
    sliced = sorted(name for name, slices in layout.items() if slices is not None)
    if sliced:
        raise ConfigError(f"method.targets={cfg.targets}: adalora adapts whole modules, and {sliced[0]} would be "
                          "adapted in slices (a fused projection); target the whole module by name, or use method=lora")
    return list(layout)


def inject(model: nn.Module, cfg: Config, info) -> list[str]:
    if cfg.init_r is not None and cfg.init_r < cfg.target_r:
        raise ConfigError(f"method.init_r={cfg.init_r} is below method.target_r={cfg.target_r}: the budget only "
                          "shrinks; raise init_r or leave it null (⌈1.5·target_r⌉)")
    names = _layout(model, cfg, info)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        _set_module(model, name, SVDLayer(model.get_submodule(name), cfg.rank, cfg.alpha, cfg.dropout))
    return names


def regularizer(model: nn.Module, cfg: Config) -> torch.Tensor | None:
    """γ·mean of ‖QQᵀ − I‖_F and ‖PᵀP − I‖_F over every adapted matrix (the authors' code and peft; see the module
    docstring); None when γ = 0."""
    layers = svd_layers(model)
    if not layers or cfg.orth_reg_weight == 0:
        return None
    return cfg.orth_reg_weight * torch.stack([n for layer in layers for n in layer.orthogonality()]).mean()


def after_step(model: nn.Module, cfg: Config, step: int, total_steps: int) -> None:
    """After optimiser step `step` of `total_steps`, before the gradients are zeroed: the importance update (until
    T − t_f) and the allocation the schedule asks for (methods/adalora_budget.py; peft's `update_and_allocate`)."""
    layers = svd_layers(model)
    if not layers:
        return
    tinit, tfinal = schedule_steps(cfg, total_steps)
    end = total_steps - tfinal
    if step < end:
        for layer in layers:
            layer.update_importance(cfg.beta1, cfg.beta2)
    if step > end:   # the final allocation, fixed
        for layer in layers:
            layer.apply_keep()
        return
    keep, due = budget(step, total_steps, sum(layer.r for layer in layers), cfg.target_r * len(layers), tinit,
                       tfinal, cfg.delta_t)
    if due:
        allocate(layers, keep)
    if step == end:
        log.info("adalora: final allocation at step %d of %d: ranks %s", step, total_steps,
                 [int(layer.keep.sum()) for layer in layers])


def count(cfg: Config, info, model: nn.Module) -> int:
    """The final budget, what the budget knob matches (the paper's "# Params" for AdaLoRA): target_r triplets per
    adapted matrix, each d₁ + d₂ + 1 parameters (a column of P, a λ, a row of Q). The allocation moves ranks between
    matrices, so with matrices of different shapes the final count varies around it (adapter/rank_allocation.json has
    the real one); all r₀ triplets train until then (the record's params.trainable_no_head)."""
    return sum(cfg.target_r * (sum(_shape(model.get_submodule(name))) + 1) for name in _layout(model, cfg, info))


def allocation(model: nn.Module) -> dict:
    """The final rank of every adapted matrix and the budget they make up."""
    ranks, params = {}, 0
    for name, layer in model.named_modules():
        if isinstance(layer, SVDLayer):
            ranks[name] = int(layer.keep.sum())
            params += ranks[name] * (layer.in_features + layer.out_features + 1)
    return {"ranks": ranks, "total_rank": sum(ranks.values()), "matrices": len(ranks), "final_params": params}


def save_adapter(model, cfg: Config, info, folder) -> Path:
    """The trainable parameters (safetensors), the config, and `rank_allocation.json`: each matrix's final rank."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in trainable_state(model).items()},
              str(folder / "adapter.safetensors"))
    meta = {"method": "adalora", "model": info.name, "config": dataclasses.asdict(cfg), "init_r": cfg.rank}
    (folder / "adapter_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    final = {**allocation(model), "target_total_rank": cfg.target_r * len(svd_layers(model)), "init_r": cfg.rank}
    (folder / "rank_allocation.json").write_text(json.dumps(final, indent=2) + "\n")
    log.info("adalora: final ranks %s (total %d of %d target)", list(final["ranks"].values()), final["total_rank"],
             final["target_total_rank"])
    return folder


@register("adalora", Config, eval_context=merged, save=save_adapter, size_param="target_r", count=count,
          regularizer=regularizer, after_step=after_step)
def apply(model, cfg: Config, info):
    inject(model, cfg, info)
    return model
