"""Helpers shared by the method tests: a seeded tiny classifier from a model yaml, applying a method, a few steps."""
import torch
from omegaconf import OmegaConf

import methods
from harness.models.classifier import load_classifier
from harness.models.info import ModelInfo
from tests.conftest import compose_cfg


def tiny_classifier(model: str = "tiny-bert", *overrides: str):
    """(model, ModelInfo) for a tiny random model yaml, seeded so every call builds the same weights."""
    mcfg = OmegaConf.to_container(compose_cfg(f"model={model}", *overrides).model, resolve=True)
    torch.manual_seed(0)
    return load_classifier(mcfg, 2), ModelInfo.from_cfg(mcfg)


def adapt(name: str, model, info, **values):
    """Build the method from its name and values (as Hydra would) and apply it; returns (model, config)."""
    method, cfg = methods.build({"name": name, **values})
    return method.apply(model, cfg, info), cfg


def trainable_no_head(model, info) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not info.is_head(n))


def train_steps(model, batch: dict, lr: float = 1e-2, steps: int = 10) -> list[float]:
    """AdamW steps on one fixed batch over the trainable parameters; the loss before each step."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return losses
