"""The analysis figures, PNG, in the report's way (matplotlib's object API under the default style, no dated metadata,
so the same runs give the same bytes):

- subspace similarity heat maps like the paper's Figures 3–4: φ(i, j) for one pair of runs, a panel per layer
  (columns) and weight type (rows), i down, j across, 0 (dark) to 1 (bright);
- full fine-tuning's ΔW: singular values σ_k / σ₁ (log scale) and the cumulative energy Σ_{k'≤k} σ²_{k'} / ‖ΔW‖²_F
  against k, a line per layer (mean over seeds), a column per weight type, the ranks of linalg.ENERGY_RANKS marked.
"""
from __future__ import annotations

import re

import matplotlib
import matplotlib.style
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from harness.analyze.linalg import ENERGY_RANKS
from harness.report.plots import PNG_META, STYLE_CYCLE
from harness.report.records import TARGET_ORDER


def slug(*parts) -> str:
    return re.sub(r"[^a-z0-9]+", "_", " ".join(map(str, parts)).lower()).strip("_")


def _types(keys) -> list[str]:
    return sorted({t for _, t in keys}, key=lambda t: (TARGET_ORDER.index(t) if t in TARGET_ORDER else 99, t))


def _layers(keys) -> list:
    return sorted({layer for layer, _ in keys}, key=lambda layer: -1 if layer is None else layer)


def heatmap(title: str, maps: dict, window=None) -> Figure:
    layers, types = _layers(maps), _types(maps)
    fig = Figure(figsize=(1.8 * len(layers) + 1.4, 1.7 * len(types) + 1.0), layout="constrained")
    axes = fig.subplots(len(types), len(layers), squeeze=False)
    image = None
    for row, wtype in enumerate(types):
        for col, layer in enumerate(layers):
            ax, phi = axes[row, col], maps.get((layer, wtype))
            if phi is None:
                ax.set_visible(False)
                continue
            rows, cols = (min(phi.shape[0], window[0]), min(phi.shape[1], window[1])) if window else phi.shape
            image = ax.imshow(phi[:rows, :cols].numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                              interpolation="nearest", extent=(0.5, cols + 0.5, rows + 0.5, 0.5))
            ax.set_title(f"layer {layer}, {wtype}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.set_xlabel("j" if row == len(types) - 1 else "", fontsize=8)
            ax.set_ylabel("i" if col == 0 else "", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8).set_label("φ(i, j)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def spectrum(title: str, curves: dict) -> Figure:
    """`curves`: (layer, type) → [singular values per seed]."""
    layers, types = _layers(curves), _types(curves)
    fig = Figure(figsize=(3.6 * len(types) + 1.6, 6.0), layout="constrained")
    axes = fig.subplots(2, len(types), squeeze=False)
    for col, wtype in enumerate(types):
        top, bottom = axes[0, col], axes[1, col]
        for ax in (top, bottom):
            ax.set_prop_cycle(STYLE_CYCLE)
        for layer in layers:
            found = curves.get((layer, wtype))
            if not found:
                continue
            s = torch.stack([v.double() for v in found]).mean(0)
            k = torch.arange(1, len(s) + 1).numpy()
            energy = (s ** 2).cumsum(0) / (s ** 2).sum()
            top.plot(k, (s / s[0]).numpy(), marker="", label=f"layer {layer}")
            bottom.plot(k, energy.numpy(), marker="", label=f"layer {layer}")
        top.set_yscale("log")
        top.set_title(f"{wtype}: σ_k / σ₁", fontsize=9)
        bottom.set_title(f"{wtype}: energy of the top k", fontsize=9)
        bottom.set_xlabel("k", fontsize=8)
        size = max(len(v) for found in curves.values() for v in found)
        for r in (r for r in ENERGY_RANKS if r <= size):
            bottom.axvline(r, color="0.6", linestyle="--", linewidth=0.7)
        bottom.set_ylim(0.0, 1.02)
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def write_plots(measures, outdir, window=None) -> list[str]:
    """Every analysis figure under `outdir`; returns the paths relative to outdir's parent (as index.html names them)."""
    jobs = [(f"similarity_{slug(*key)}", heatmap, (f"φ(i, j): {' · '.join(key)}", maps, window))
            for key, maps in sorted(measures.maps.items()) if maps]
    jobs += [(f"spectrum_{slug(label)}", spectrum, (f"Full fine-tuning ΔW: {label}, mean over seeds", curves))
             for label, curves in sorted(measures.curves.items())]
    written = []
    with matplotlib.style.context("default"):   # the style applies when a figure is built
        for stem, build, args in jobs:
            outdir.mkdir(parents=True, exist_ok=True)
            build(*args).savefig(outdir / f"{stem}.png", dpi=110, metadata=PNG_META)
            written.append(f"{outdir.name}/{stem}.png")
    return written
