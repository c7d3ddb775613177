"""Causal language models for the generation tasks (E2E NLG, WikiSQL): GPT-2 from the hub, SmolLM2 from a GGUF file in
an installed package, tiny random GPT-2 / Llama for tests.

A GGUF file is dequantised by transformers (+ gguf) into a float model, ~20 s and several seconds more for its
tokenizer; the result is saved once (safetensors, config, tokenizer) under `<cache_dir>/models/<name>-<sha256[:16]>`,
keyed by the file's sha256, so later loads read plain safetensors. The hash itself is cached by (path, size, mtime):
hashing 100 MB is a second we need not pay twice. Writes go to a temporary folder renamed into place, so two runs
converting at once are safe (the loser discards its copy).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from harness.errors import ConfigError
from harness.models import package_dir
from harness.results import write_json_atomic

log = logging.getLogger("harness")
SOURCES = ("gguf", "hub", "tiny")


def default_cache_dir(cache_dir: str | None = None) -> Path:
    return Path(cache_dir or os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "lora-harness")


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of `path`, remembered in `<cache_dir>/models/sha256.json` under (path, size, mtime)."""
    stat = path.stat()
    index_path = cache_dir / "models" / "sha256.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(str(path.resolve()))
    if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    index[str(path.resolve())] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    write_json_atomic(index_path, index)
    return digest.hexdigest()


def gguf_path(mcfg: dict) -> Path:
    path = package_dir(mcfg["package"]) / mcfg["gguf_file"]
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise ConfigError(f"model.gguf_file={mcfg['gguf_file']!r} not found in {path.parent}; GGUF files there: {found}")
    return path


def converted_dir(mcfg: dict, cache_dir: str | None = None) -> Path:
    """The cached float conversion of a GGUF model (made on first use): a folder `from_pretrained` reads."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = default_cache_dir(cache_dir)
    source = gguf_path(mcfg)
    sha = file_sha256(source, cache)
    final = cache / "models" / f"{mcfg['name']}-{sha[:16]}"
    if (final / "source.json").is_file():  # written last, before the rename: the folder is complete
        return final
    log.info("converting %s to float weights (once; cached in %s)", source.name, final)
    transformers.logging.set_verbosity_error()
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    # The GGUF quantiser dequantised every tensor on load: the weights are plain floats, saved and reloaded as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "source.json").write_text(json.dumps({"gguf": str(source), "sha256": sha}, indent=2) + "\n")
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "source.json").is_file():  # not a lost race: a real failure
            raise
    return final


def _pretrained_path(mcfg: dict, cache_dir: str | None) -> str:
    source = mcfg.get("source")
    if source == "gguf":
        return str(converted_dir(mcfg, cache_dir))
    if source == "hub":
        return mcfg["hub_id"]
    raise ConfigError(f"model.source={source!r} is not valid for a causal LM; valid choices: {', '.join(SOURCES)}")


def load_tokenizer(mcfg: dict, cache_dir: str | None = None):
    from transformers import AutoTokenizer

    if mcfg.get("source") == "tiny":
        tok = mcfg["tokenizer"]
        return AutoTokenizer.from_pretrained(str(package_dir(tok["package"], tok.get("subdir", ""))))
    return AutoTokenizer.from_pretrained(_pretrained_path(mcfg, cache_dir))


def load_causal_lm(mcfg: dict, cache_dir: str | None = None) -> nn.Module:
    """The model in float32 (the training loop casts for mixed precision). Seed torch first for `source: tiny`."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    if mcfg.get("source") == "tiny":
        cfg = dict(mcfg["config"])
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    transformers.logging.set_verbosity_error()
    return AutoModelForCausalLM.from_pretrained(_pretrained_path(mcfg, cache_dir), dtype=torch.float32)


def special_ids(tokenizer) -> tuple[int, int]:
    """(end-of-text id, padding id). A WordPiece tokenizer (the tiny test models') has no EOS: [SEP] ends the text.
    GPT-2 has no padding token: padding uses EOS (padded positions are masked and never labelled)."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} has neither an EOS nor a SEP token to end a target")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return eos, pad
