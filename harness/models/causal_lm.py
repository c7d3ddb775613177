"""Causal language models for the generation tasks (E2E NLG, WikiSQL): GPT-2 from the hub, SmolLM2 from a GGUF file in
an installed package, tiny random GPT-2 / Llama for tests — all through the one source resolver (harness/models/source.py)."""
from __future__ import annotations

from torch import nn

from harness.errors import ConfigError
from harness.models import source


def load_causal_lm(model_cfg: dict, cache_dir: str | None = None) -> nn.Module:
    """The model in float32 (the training loop casts for mixed precision). Seed torch first for `source: tiny`."""
    from transformers import AutoModelForCausalLM

    return source.load_pretrained(model_cfg, AutoModelForCausalLM, cache_dir)


def special_ids(tokenizer) -> tuple[int, int]:
    """(end-of-text id, padding id). A WordPiece tokenizer (the tiny test models') has no EOS: [SEP] ends the text.
    GPT-2 has no padding token: padding uses EOS (padded positions are masked and never labelled)."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} has neither an EOS nor a SEP token to end a target")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return eos, pad
