"""Sequence classifiers (GLUE): the model with a fresh task head (`num_labels=1` is regression, STS-B), read through
the one source resolver (harness/models/source.py), and the head's pooling: BERT's [CLS] pooler or the masked mean."""
from __future__ import annotations

import torch
from torch import nn

from harness.errors import ConfigError
from harness.models import source


def load_classifier(model_cfg: dict, num_labels: int, cache_dir: str | None = None) -> nn.Module:
    """A sequence classifier with a fresh task head. Seed torch before calling: the head's initialisation draws from
    its RNG."""
    from transformers import AutoModelForSequenceClassification

    model = source.load_pretrained(model_cfg, AutoModelForSequenceClassification, cache_dir, **head_config(num_labels))
    if pooling_of(model_cfg) == "mean":
        use_mean_pooling(model)
    return model


def head_config(num_labels: int) -> dict:
    """The config keys a task head sets: its size and whether it regresses (one output) or classifies."""
    return {"num_labels": num_labels, "problem_type": "regression" if num_labels == 1 else "single_label_classification"}


POOLINGS = ("cls", "mean")


def pooling_of(model_cfg: dict) -> str:
    """The model yaml's `pooling` (default `cls`), checked: start-up validation and `load_classifier` both ask here."""
    pooling = model_cfg.get("pooling", "cls")
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
