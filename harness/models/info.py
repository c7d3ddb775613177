"""What methods may know about a model: the map from the paper's weight types (`q k v o mlp`) to an architecture's
module names (conf/model/arch/*.yaml), its layers and width (read from the model's own config), its task head."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from harness.errors import ConfigError

WEIGHT_TYPES = ("q", "k", "v", "o", "mlp")


@dataclass
class ModelInfo:
    """What methods may know about a model: read from the model yaml, never hard-coded in a method."""

    name: str
    arch: str
    weight_types: dict[str, str]
    layer_pattern: str
    num_layers: int
    d_model: int
    head: list[str] = field(default_factory=list)
    # Fused projections: module-name regex → the weight types stacked in its output, in order (GPT-2 `c_attn`: q, k, v).
    fused: dict[str, list[str]] = field(default_factory=dict)
    # Named sub-modules that adapters and prefix methods insert at (module-name regexes, like weight types, and usable
    # as `find` targets): attn_out / ffn_out (the attention and feed-forward output projections), ffn_block (the whole
    # feed-forward block), norms (the LayerNorms of each layer).
    modules: dict[str, str] = field(default_factory=dict)
    # Leading tokens that stay before a prefix: 1 where the classifier reads the first token ([CLS], <s>), else 0.
    prefix_after: int = 0

    @classmethod
    def from_cfg(cls, model_cfg: dict, hf_config=None) -> "ModelInfo":
        """From the model yaml (with its architecture map) and the model's own config, which gives the layer count
        and width (`num_hidden_layers`, `hidden_size`: every transformers config answers to these names). Without
        `hf_config` it is resolved from the model's source (harness/models/source.py)."""
        if hf_config is None:
            from harness.models.source import hf_config as resolve

            hf_config = resolve(model_cfg, local_only=False)
        sizes = {"num_layers": int(hf_config.num_hidden_layers), "d_model": int(hf_config.hidden_size)}
        for key, value in sizes.items():
            if model_cfg.get(key) is not None and int(model_cfg[key]) != value:
                raise ConfigError(f"model.{key}={model_cfg[key]} disagrees with the model's own config ({value}); "
                                  f"remove it from the model yaml (it is read from the config)")
        return cls(model_cfg["name"], model_cfg["arch"], dict(model_cfg["weight_types"]), model_cfg["layer_pattern"],
                   sizes["num_layers"], sizes["d_model"], list(model_cfg.get("head") or []),
                   {k: list(v) for k, v in (model_cfg.get("fused") or {}).items()},
                   dict(model_cfg.get("modules") or {}), int(model_cfg.get("prefix_after") or 0))

    def fused_parts(self, module_name: str) -> list[str] | None:
        for pattern, parts in self.fused.items():
            if _module_pattern(pattern).search(module_name):
                return parts
        return None

    def weight_type_of(self, module_name: str) -> str | None:
        """The paper weight type (q k v o mlp) whose module pattern `module_name` matches, or None (a fused projection
        matches several: the first is returned; `fused_parts` lists them)."""
        for wtype, regex in self.weight_types.items():
            if _module_pattern(regex).search(module_name):
                return wtype
        return None

    def matrix_of(self, module_name: str, start: int | None = None, size: int | None = None) -> tuple[int | None, str]:
        """(layer, weight type) of a module's weight matrix, or of its output rows start:start+size on a fused
        projection (GPT-2's c_attn rows 0:d are q); a module no weight type names is typed by its last name part."""
        parts = self.fused_parts(module_name)
        if parts and start is not None and size:
            return self.layer_of(module_name), parts[start // size]
        return self.layer_of(module_name), self.weight_type_of(module_name) or module_name.rsplit(".", 1)[-1]

    def layer_of(self, module_name: str) -> int | None:
        match = re.search(self.layer_pattern, "." + module_name + ".")
        return int(match.group(1)) if match else None

    def is_head(self, param_name: str) -> bool:
        dotted = "." + param_name
        return any(("." + prefix + ".") in dotted for prefix in self.head)

    def train_head(self, model: nn.Module) -> None:
        """Every method trains the task head (the paper's convention; it is left out of `trainable_no_head`)."""
        for name, p in model.named_parameters():
            if self.is_head(name):
                p.requires_grad_(True)

    def count_params(self, model: nn.Module) -> dict:
        """{trainable, trainable_no_head, total}: the run record's `params` (the paper counts without the head)."""
        trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
        return {"trainable": sum(trainable.values()),
                "trainable_no_head": sum(v for n, v in trainable.items() if not self.is_head(n)),
                "total": sum(p.numel() for p in model.parameters())}

    def find(self, model: nn.Module, targets, layers=None, types=(nn.Linear,)) -> list[str]:
        """Module names matching `targets` (paper weight types, exact names / `endswith('.'+t)`, or regexes), optionally
        restricted to layer indices; matching nothing is an error (a silent no-op would train only the head)."""
        patterns = []
        for target in targets:
            if target in self.weight_types or target in self.modules:
                patterns.append(_module_pattern(self.weight_types.get(target) or self.modules[target]))
            else:
                patterns.append(_target_pattern(target, sorted(self.weight_types)))
        names = []
        for name, module in model.named_modules():
            if types and not isinstance(module, types):
                continue
            if self.is_head(name + ".x"):
                continue
            if not any(p.search(name) for p in patterns):
                continue
            if layers is not None and self.layer_of(name) not in set(layers):
                continue
            names.append(name)
        if not names:
            raise ConfigError(
                f"method.targets={list(targets)} (layers={layers}) match no module of model {self.name}; "
                f"weight types for it: {sorted(self.weight_types)}, or give exact module names / a regex"
            )
        return names


def _module_pattern(regex: str) -> re.Pattern:
    """A weight type's or named module's regex, matched against a module name's last dotted parts."""
    return re.compile(f"(^|\\.)({regex})$")


def _target_pattern(target: str, weight_types: list[str]) -> re.Pattern:
    """A target that is no weight type: an exact module name (or its last parts) or a regular expression."""
    try:
        re.compile(target)
    except re.error as exc:
        raise ConfigError(f"method.targets: {target!r} is neither a weight type ({', '.join(weight_types)}), a module "
                          f"name nor a valid regular expression ({exc})") from None
    return re.compile(f"(^|\\.){re.escape(target)}$|^(?:{target})$")
