"""The analysis tables: each measurement averaged over runs (seeds, or pairs of runs) per layer and weight type, and
per weight type over layers, as the report's table dicts (harness/report/render.py); each table's CSV keeps every
row unaveraged and unrounded."""
from __future__ import annotations

import pandas as pd

from harness.analyze.linalg import ENERGY_LEVEL, ENERGY_RANKS
from harness.report.tables import frame_table

PHI = "{:.3f}".format
NORM = "{:.4g}".format
ONE = "{:.1f}".format

SIMILARITY = {"phi_11": ("φ(1,1)", PHI), "phi_mm": ("φ(m,m)", PHI), "phi_diag_mean": ("mean φ(i,i), i≤m", PHI),
              "phi_window_mean": ("mean φ(i,j) in window", PHI), "random_11": ("random φ(1,1)", PHI),
              "random_diag_mean": ("random mean φ(i,i)", PHI)}
AMPLIFICATION = {"w_norm": ("‖W‖_F", NORM), "delta_norm": ("‖ΔW‖_F", NORM),
                 "proj_delta": ("‖UᵀWVᵀ‖_F, U,V: ΔW", NORM), "proj_w": ("U,V: W", NORM),
                 "proj_random": ("U,V: random", NORM), "amplification": ("amplification", ONE)}
SPECTRUM = {"delta_norm": ("‖ΔW‖_F", NORM), "sigma_1": ("σ₁", NORM), "effective_rank": ("effective rank", ONE),
            "rank_90": (f"rank for {ENERGY_LEVEL:.0%} energy", ONE),
            **{f"energy_r{r}": (f"energy r={r}", PHI) for r in ENERGY_RANKS}}

SIMILARITY_NOTES = [
    "φ(A₁, A₂, i, j) = ‖U_{A₁}^{i⊤} U_{A₂}^{j}‖²_F / min(i, j) (Hu et al. 2022, §7.2, eq. 4): U_A^i are the top-i "
    "right-singular vectors of A (r × d_in); 1 when the top-i directions of one lie in the top-j of the other, 0 "
    "when orthogonal. m is the smaller rank of the pair; the window is the heat map's i, j range.",
    "random: the expectation for independent uniformly random subspaces of ℝ^d_in, max(i, j)/d_in.",
    "Rank pairs compare two ranks at one seed (the paper's Figure 3), seed pairs two seeds at one rank (Figure 4); "
    "values are means over the pairs (and layers, by type)."]
AMPLIFICATION_NOTES = [
    "The paper's Table 7 (§7.3): W (the pretrained weight) projected onto the r-dimensional subspaces U, V of ΔW's "
    "top-r left / right singular vectors, of W's own top r, and of a random (seeded) draw: ‖UᵀWVᵀ‖_F.",
    "amplification = ‖ΔW‖_F / ‖UᵀWVᵀ‖_F with U, V from ΔW (the paper: 6.91 / 0.32 ≈ 21.5, GPT-3 Wq, r = 4); "
    "ΔW = (α/r)·BA of the run's final adapter. Means over seeds (and layers, by type)."]
SPECTRUM_NOTES = [
    "ΔW = W_ft − W₀ of full fine-tuning (saved with method.save_delta=true), its singular values σ_k.",
    "effective rank: exp(H(p)), p_k = σ_k / Σσ (Roy & Vetterli 2007); rank for 90 % energy: the fewest k with "
    "Σ_{k'≤k} σ²_{k'} ≥ 0.9 ‖ΔW‖²_F.",
    "energy r: Σ_{k≤r} σ_k² / Σ σ_k², the share of ‖ΔW‖²_F kept by the best rank-r approximation (Eckart–Young: "
    "‖ΔW − ΔW_r‖²_F = Σ_{k>r} σ_k²). Means over seeds (and layers, by type)."]


def averaged(rows: list[dict], keys: list[str], columns: dict, count: str, title: str, name: str,
             notes: list[str]) -> dict:
    """Rows averaged over everything but `keys`, formatted; `count` heads the number of rows averaged."""
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].fillna(-1).astype(int)
    grouped = frame.groupby(keys, sort=True)
    means, sizes = grouped[list(columns)].mean(), grouped.size()
    shown = means.reset_index()[keys].astype(str)
    if "layer" in keys:
        shown["layer"] = shown["layer"].replace("-1", "–")   # a matrix outside the layers
    shown[count] = sizes.to_numpy()
    for column, (header, fmt) in columns.items():
        shown[header] = [fmt(v) for v in means[column].to_numpy()]
    table = frame_table(shown, title, name, notes)
    table["csv"] = frame
    return table


def analysis_tables(measures) -> list[dict]:
    """The tables the measurements support (none for a kind without rows)."""
    out = []
    kinds = (("similarity", measures.similarity, ["configuration", "comparison"], SIMILARITY, "pairs",
              "Subspace similarity of LoRA's A between runs", SIMILARITY_NOTES),
             ("amplification", measures.amplification, ["configuration", "r"], AMPLIFICATION, "seeds",
              "ΔW against W: projections and amplification (Table 7)", AMPLIFICATION_NOTES),
             ("spectrum", measures.spectra, ["configuration"], SPECTRUM, "seeds",
              "Full fine-tuning's ΔW: spectrum, effective rank, rank-r energy", SPECTRUM_NOTES))
    for name, rows, keys, columns, count, title, notes in kinds:
        if rows:
            out.append(averaged(rows, keys + ["layer", "type"], columns, count, f"{title}, per layer",
                                f"analysis_{name}", notes))
            out.append(averaged(rows, keys + ["type"], columns, f"{count} × layers", f"{title}, by weight type",
                                f"analysis_{name}_by_type", notes))
    return out
