"""The measurements, on plain matrices (computed in float64):

    subspace_similarity   the paper's normalised subspace similarity φ (Hu et al. 2022, §7.2, eq. 4)
    projections           Table 7 (§7.3): ‖ΔW‖_F, ‖UᵀWVᵀ‖_F for U, V from ΔW, from W itself and random; amplification
    spectrum              a full fine-tuning update's singular values, effective rank and rank-r energy (Eckart–Young)
"""
from __future__ import annotations

import math

import torch

ENERGY_RANKS = (1, 2, 4, 8, 64)
ENERGY_LEVEL = 0.9


def right_basis(a: torch.Tensor) -> torch.Tensor:
    """The right-singular vectors of A (r × d_in) as columns, by descending singular value: the paper's
    "right-singular unitary matrix" U_A of eq. (4), d_in × min(r, d_in)."""
    return torch.linalg.svd(a.double(), full_matrices=False)[2].T


def subspace_similarity(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """φ(A₁, A₂, i, j) = ‖U_{A₁}^{i ⊤} U_{A₂}^{j}‖²_F / min(i, j) ∈ [0, 1] for every i ≤ r₁, j ≤ r₂ (eq. 4; U^i: the
    columns of the top i singular vectors), as a matrix whose entry [i − 1, j − 1] is φ(i, j). The squared Frobenius
    norm of the top-left i × j block of G = U_{A₁}ᵀ U_{A₂} is a double cumulative sum of G²."""
    g = right_basis(a1).T @ right_basis(a2)
    block = (g ** 2).cumsum(0).cumsum(1)
    i = torch.arange(1, block.shape[0] + 1, dtype=block.dtype)[:, None]
    j = torch.arange(1, block.shape[1] + 1, dtype=block.dtype)[None, :]
    return block / torch.minimum(i, j)


def random_similarity(i: int, j: int, d: int) -> float:
    """E φ(i, j) for an i- and a j-dimensional subspace of ℝ^d drawn independently and uniformly: E‖PᵢQⱼ‖²_F =
    tr(Pᵢ E[Qⱼ]) = tr(Pᵢ · (j/d) I) = i·j/d, so E φ = max(i, j)/d (the floor a learned similarity is read against)."""
    return max(i, j) / d


def top_singular(m: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U_r, all singular values, V_r): the top r left / right singular vectors of M as columns."""
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    return u[:, :r], s, vh[:r].T


def projection_norm(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> float:
    """‖UᵀWV‖_F: W projected onto the r-dimensional subspaces spanned by U's and V's columns — the paper's ‖UᵀWVᵀ‖_F,
    where its V holds the right singular vectors as rows."""
    return float(torch.linalg.matrix_norm(u.T @ w.double() @ v))


def random_orthonormal(n: int, r: int, generator: torch.Generator) -> torch.Tensor:
    """n × r with orthonormal columns spanning a uniformly random subspace (QR of a Gaussian matrix)."""
    return torch.linalg.qr(torch.randn(n, r, generator=generator, dtype=torch.float64))[0]


def projections(w: torch.Tensor, delta: torch.Tensor, r: int, seed: int = 0) -> dict:
    """Table 7 of the paper for one matrix: W projected onto the top-r subspaces of ΔW, of W itself and of a random
    draw (seeded), with ‖W‖_F, ‖ΔW‖_F and the amplification factor ‖ΔW‖_F / ‖UᵀWVᵀ‖_F (U, V from ΔW): how much ΔW
    enlarges the directions of W it acts on (the paper: 6.91 / 0.32 ≈ 21.5 for GPT-3's Wq at r = 4)."""
    r = min(r, *w.shape)
    u, _, v = top_singular(delta, r)
    uw, sw, vw = top_singular(w, r)
    generator = torch.Generator().manual_seed(seed)
    ur, vr = random_orthonormal(w.shape[0], r, generator), random_orthonormal(w.shape[1], r, generator)
    delta_norm, along_delta = float(torch.linalg.matrix_norm(delta.double())), projection_norm(w, u, v)
    return {"r": r, "w_norm": float(torch.linalg.matrix_norm(w.double())), "delta_norm": delta_norm,
            "proj_delta": along_delta, "proj_w": projection_norm(w, uw, vw), "proj_random": projection_norm(w, ur, vr),
            "amplification": delta_norm / along_delta if along_delta > 0 else math.nan}


def energy_fraction(s: torch.Tensor, r: int) -> float:
    """Σ_{k≤r} σ_k² / Σ_k σ_k²: the share of ‖ΔW‖²_F kept by its best rank-r approximation (Eckart–Young:
    ‖ΔW − ΔW_r‖²_F = Σ_{k>r} σ_k², the least of any rank-r matrix)."""
    power = s.double() ** 2
    total = float(power.sum())
    return float(power[:r].sum()) / total if total > 0 else math.nan


def effective_rank(s: torch.Tensor) -> float:
    """Roy & Vetterli (2007): exp(H(p)), p_k = σ_k / Σ σ, H the Shannon entropy (nats); 1 for a rank-1 matrix, n for
    n equal singular values."""
    s = s.double()
    if float(s.sum()) <= 0:
        return 0.0
    p = s[s > 0] / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def rank_for_energy(s: torch.Tensor, level: float = ENERGY_LEVEL) -> int:
    """The fewest singular directions whose energy Σ_{k≤r} σ_k² reaches `level` of ‖ΔW‖²_F."""
    power = s.double() ** 2
    if float(power.sum()) <= 0:
        return 0
    cumulative = power.cumsum(0) / power.sum()
    return min(int((cumulative < level - 1e-12).sum()) + 1, len(s))


def spectrum(delta: torch.Tensor) -> dict:
    """The singular values of ΔW and what they say: ‖ΔW‖_F, σ₁, effective rank, the rank reaching 90 % of the
    energy, and the energy kept at each r of ENERGY_RANKS (r past the smaller dimension keeps all of it)."""
    s = torch.linalg.svdvals(delta.double())
    return {"singular_values": s, "delta_norm": float(torch.linalg.matrix_norm(delta.double())),
            "sigma_1": float(s[0]) if len(s) else 0.0, "effective_rank": effective_rank(s),
            "rank_90": rank_for_energy(s), **{f"energy_r{r}": energy_fraction(s, r) for r in ENERGY_RANKS}}
