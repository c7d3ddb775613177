"""Full fine-tuning: every parameter trains (the paper's FT baseline).

`save_delta=true` (opt-in: the file is as large as the matrices) keeps what harness-analyze needs to ask how much of
full fine-tuning's update a rank-r matrix holds: ΔW = W_ft − W₀ of the weight matrices of the weight types
`delta_types` (default q, k, v, o), each in nn.Linear's out×in layout (a fused projection's rows per type), saved as
`adapter/delta.safetensors` in `delta_dtype` (float16 by default: MiniLM's 24 attention matrices take 7 MB) with
`adapter/delta_config.json` naming each matrix's module, rows, layer and weight type. W₀ of those matrices is copied
when the method is applied, before any training step or resumed checkpoint, so a resumed run saves the same ΔW. The
saved ΔW is the final model's, as LoRA's saved adapter is. These keys change no number the run computes: they are
not part of its identity (harness/results.py DISPLAY_KEYS), so `rerun=true` is needed to add ΔW to a completed run.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from harness.errors import ConfigError
from methods import register

DTYPES = ("float16", "bfloat16", "float32")
DELTA_FILE, DELTA_CONFIG = "delta.safetensors", "delta_config.json"
log = logging.getLogger("harness")


@dataclass
class Config:
    save_delta: bool = False
    delta_types: list = field(default_factory=lambda: ["q", "k", "v", "o"])
    delta_dtype: str = "float16"

    def __post_init__(self):
        if not isinstance(self.save_delta, bool):
            raise ValueError(f"save_delta must be true or false, got {self.save_delta!r}")
        if isinstance(self.delta_types, str):
            self.delta_types = [self.delta_types]
        if not self.delta_types:
            raise ValueError("delta_types must name at least one weight type (q k v o mlp) or module")
        self.delta_types = list(self.delta_types)
        if self.delta_dtype not in DTYPES:
            raise ValueError(f"delta_dtype must be one of {', '.join(DTYPES)}, got {self.delta_dtype!r}")


def _out_by_in(module: nn.Module) -> torch.Tensor:
    """The module's weight as out×in (GPT-2's Conv1D stores it in×out)."""
    conv1d = type(module).__name__ == "Conv1D" and hasattr(module, "nf")
    return module.weight.T if conv1d else module.weight


def delta_matrices(model: nn.Module, types: list, info) -> dict[str, dict]:
    """key → {module, rows, layer, type} for every matrix of `types`: a whole module's weight, or on a fused
    projection (GPT-2's c_attn) the rows of one weight type (key `<module>#<type>`). No match is a ConfigError."""
    from transformers.pytorch_utils import Conv1D

    found = {}
    for target in types:
        try:
            names = info.find(model, [target], None, types=(nn.Linear, Conv1D))
        except ConfigError:
            raise ConfigError(f"method.delta_types: {target!r} matches no module of model {info.name}; weight types "
                              f"for it: {', '.join(sorted(info.weight_types))}, or give exact module names / a regex"
                              ) from None
        for name in names:
            parts, rows = info.fused_parts(name), None
            if parts and target in parts:
                size = _out_by_in(model.get_submodule(name)).shape[0] // len(parts)
                rows = [parts.index(target) * size, size]
            layer, wtype = info.matrix_of(name, *(rows or [None, None]))
            found[f"{name}#{target}" if rows else name] = {"module": name, "rows": rows, "layer": layer, "type": wtype}
    return found


def _weight(model: nn.Module, entry: dict) -> torch.Tensor:
    weight = _out_by_in(model.get_submodule(entry["module"]))
    start, size = entry["rows"] or (0, weight.shape[0])
    return weight[start:start + size]


def apply(model, cfg: Config, info):
    for p in model.parameters():
        p.requires_grad_(True)
    if cfg.save_delta:  # W₀ of the matrices whose ΔW is kept; clone() keeps a weightless skeleton's meta tensors meta
        matrices = delta_matrices(model, cfg.delta_types, info)
        model._full_ft_w0 = {key: (entry, _weight(model, entry).detach().clone()) for key, entry in matrices.items()}
    return model


def save_delta(model, cfg: Config, info, folder):
    """`folder`/delta.safetensors (ΔW = W_ft − W₀ per matrix) and delta_config.json; nothing without save_delta. A
    ΔW whose float16 / bfloat16 copy would not be finite is kept in float32 (with a warning)."""
    from safetensors.torch import save_file

    if not cfg.save_delta:
        return None
    dtype, tensors, entries = getattr(torch, cfg.delta_dtype), {}, {}
    for key, (entry, w0) in model._full_ft_w0.items():
        delta = _weight(model, entry).detach().float().cpu() - w0.float().cpu()
        tensors[key] = delta.to(dtype)
        if not torch.isfinite(tensors[key]).all():
            log.warning("ΔW of %s does not fit %s; saved in float32", key, cfg.delta_dtype)
            tensors[key] = delta
        entries[key] = {**entry, "dtype": str(tensors[key].dtype).removeprefix("torch.")}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: t.contiguous() for k, t in tensors.items()}, str(folder / DELTA_FILE))
    meta = {"method": "full_ft", "model": info.name, "delta": "W_ft - W0, out x in", "matrices": entries}
    (folder / DELTA_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


register("full_ft", Config, save=save_delta)(apply)
