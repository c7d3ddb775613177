"""What the benchmarks share: a model yaml and a method yaml read from the shipped config (harness/catalog.py), the
seeded classifier they are measured on, and a method applied to it as a run applies it."""
from __future__ import annotations

from omegaconf import OmegaConf

from harness import catalog


class BenchError(Exception):
    """A bad option: the command prints one line naming it and exits with code 2."""


def model_config(name: str) -> dict:
    found = catalog.model_yaml(name)
    if found is None:
        raise BenchError(f"--model {name!r}: no harness/conf/model/{name}.yaml; choices: "
                         f"{', '.join(catalog.choices('model'))}")
    return found


def method_config(name: str, overrides: list[str] = ()) -> dict:
    """The method's yaml (its defaults) with `key=value` overrides, as Hydra would compose `method=name`."""
    cfg = OmegaConf.create(catalog.method_meta(name) or {"name": name})
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=True)


def load_model(model_name: str):
    """(classifier with a 2-label head, ModelInfo), seeded: every call builds the same weights."""
    import torch

    from harness.models.classifier import load_classifier
    from harness.models.info import ModelInfo

    model_cfg = model_config(model_name)
    torch.manual_seed(0)
    model = load_classifier(model_cfg, 2)
    return model, ModelInfo.from_cfg(model_cfg, model.config)


def adapt(model, info, method_name: str, overrides: list[str] = ()):
    """(model with the method applied, its config): sized to a budget when the yaml or overrides set one."""
    import methods

    method, cfg = methods.build(method_config(method_name, overrides))
    cfg = method.sized(cfg, info, model)
    return method.apply(model, cfg, info), method, cfg
