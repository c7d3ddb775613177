"""Prefix methods, as the LoRA paper defines them (Hu et al. 2022, §5.1; after Li & Liang 2021):

    prefix_embed  PreEmbed: l_p prefix and l_i infix special tokens with trainable word embeddings, inserted among the
                  input tokens: the prefix before the prompt, the infix appended to it.     |Θ| = d·(l_p + l_i)
    prefix_layer  PreLayer: the same slots, but the activations entering every Transformer layer at those slots are
                  trainable ("the activations computed from previous layers are simply replaced by trainable ones"):
                  one (l_p + l_i)×d matrix per layer, the input of layer 0 (the embedding output) included.
                                                                                              |Θ| = L·d·(l_p + l_i)

Works on encoders and decoders without touching model code: a forward pre-hook on the model turns `input_ids` into
`inputs_embeds` with the slots inserted, and extends `attention_mask` (and `token_type_ids`, `position_ids`, token
`labels` with -100) to match; PreLayer adds a pre-hook on each layer that overwrites the slots of its input. Each row's
layout is [pad (left) | the first `prefix_after` tokens ([CLS]/<s>, which the classifier reads) | prefix | the rest
of the prompt | infix | pad (right)], so a sentence gets the same positions however it is padded. A causal LM's
logits are mapped back to one per input token (the next-token prediction at each), so a loss computed from them
needs no change; other outputs (hidden states) keep the longer sequence. The slots take l_p + l_i positions of the
model's context, which `prefix_positions(model)` reports. Slots start as real words (Li & Liang §7.2 find a real-word init
better than a random one): embeddings of sampled vocabulary rows, and for PreLayer those words' activations.
Incremental decoding with a cache works: after the first step the slots are in the cache, and each later step's
attention mask gets them at the same places (`continue_cached`); cached and uncached decoding give the same tokens
(tests/test_prefix_decoding.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from harness.errors import ConfigError
from methods import register


@dataclass
class Config:
    l_p: int = 8   # prefix tokens
    l_i: int = 0   # infix tokens

    def __post_init__(self):
        for key in ("l_p", "l_i"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be an integer ≥ 0, got {value!r}")
        if self.l_p + self.l_i == 0:
            raise ValueError(f"l_p + l_i must be > 0, got l_p={self.l_p}, l_i={self.l_i}")


def layout(mask: torch.Tensor, l_p: int, l_i: int, after: int,
           infix_at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a (B, T) attention mask: the new index of every input position (B, T), the new index of every slot
    (B, l_p + l_i), and each row's first real position (B,). Rows must hold their tokens in one run (left or right pad).
    The infix goes after the real tokens, or before position `infix_at` (B,) of each row: a causal LM's training row is
    prompt + target, and its infix belongs between them, where decoding (which sees the prompt alone) has it."""
    real = mask.bool()
    B, T = real.shape
    t = torch.arange(T, device=mask.device)
    n = real.sum(1)
    offset = real.int().argmax(1)
    start, end = offset + n.clamp(max=after), offset + n
    if not torch.equal(real, (t >= offset[:, None]) & (t < end[:, None])):
        raise ValueError("prefix methods need each row's tokens in one run (left or right padding)")
    if infix_at is not None:
        end = torch.minimum(torch.maximum(infix_at, start), end)
    index = t + l_p * (t >= start[:, None]) + l_i * (t >= end[:, None])
    slots = torch.cat([start[:, None] + torch.arange(l_p, device=mask.device),
                       (end + l_p)[:, None] + torch.arange(l_i, device=mask.device)], 1)
    return index, slots, offset


def _target_start(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, where a prompt + target training row's target starts (its first label after unlabelled real tokens):
    the infix goes there, as decoding (which reads the prompt alone) has it; rows labelled from their first real token
    (plain language modelling) keep it after their tokens."""
    labelled = labels != -100
    first, real_start = labelled.int().argmax(1), mask.bool().int().argmax(1)
    return torch.where(labelled.any(1) & (first > real_start), first, labels.shape[1])


def _put(values: torch.Tensor, at: torch.Tensor, into: torch.Tensor) -> torch.Tensor:
    """`into` with `values` (B, k, ...) written at sequence indices `at` (B, k); out of place, so gradients flow."""
    if into.dim() == 3:
        at = at[..., None].expand(-1, -1, into.shape[-1])
    return into.scatter(1, at, values.to(into.dtype).expand(into.shape[0], *values.shape[-(into.dim() - 1):]))


class Prefix(nn.Module):
    """The trainable slots and the hooks that insert them."""

    def __init__(self, cfg: Config, after: int, embeds: torch.Tensor | None, layers: torch.Tensor | None):
        super().__init__()
        self.l_p, self.l_i, self.after = cfg.l_p, cfg.l_i, after
        self.positions = cfg.l_p + cfg.l_i
        self.embeds = nn.Parameter(embeds) if embeds is not None else None   # (n, d): PreEmbed
        self.layers = nn.Parameter(layers) if layers is not None else None   # (L, n, d): PreLayer
        self.slots = self.take = self.length = self.index = self.prompt_length = None
        self.cached = False

    def insert(self, model, args, kwargs):
        if len(args) > 1:
            raise TypeError("prefix methods need keyword arguments beyond input_ids")
        if args:
            kwargs = {"input_ids": args[0], **kwargs}
        past = kwargs.get("cache", kwargs.get("past_key_values"))   # transformers 5 passes `cache`; earlier versions
        if past is not None and hasattr(past, "get_seq_length") and past.get_seq_length() > 0:
            return self.continue_cached(kwargs)
        self.cached = False
        ids, embeds = kwargs.pop("input_ids", None), kwargs.pop("inputs_embeds", None)
        if embeds is None:
            embeds = model.get_input_embeddings()(ids)
        B, T, d = embeds.shape
        mask = kwargs.get("attention_mask")
        mask = torch.ones(B, T, dtype=torch.long, device=embeds.device) if mask is None else mask
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and T + self.positions > limit:
            raise ValueError(f"{T} tokens + {self.positions} prefix positions exceed the model's {limit} positions; "
                             f"shorten the input by {T + self.positions - limit} (trainer.max_seq_len)")
        labels = kwargs.get("labels")
        infix_at = _target_start(labels, mask) if labels is not None and labels.shape == (B, T) else None
        index, slots, offset = layout(mask, self.l_p, self.l_i, self.after, infix_at)
        n, rows = self.positions, torch.arange(B, device=mask.device)[:, None]

        def grow(x: torch.Tensor, slot_values, fill=0) -> torch.Tensor:   # x (B, T, ...) → (B, T + n, ...)
            return _put(slot_values, slots, _put(x, index, x.new_full((B, T + n, *x.shape[2:]), fill)))

        fill = self.embeds if self.embeds is not None else embeds.new_zeros(n, d)   # PreLayer overwrites them anyway
        kwargs["inputs_embeds"] = grow(embeds, fill[None])
        kwargs["attention_mask"] = grow(mask, torch.ones_like(slots))
        if kwargs.get("token_type_ids") is not None:   # a slot takes the segment of the token before it
            before = (slots - torch.arange(n, device=slots.device) - 1).clamp(0, T - 1)
            kwargs["token_type_ids"] = grow(kwargs["token_type_ids"], kwargs["token_type_ids"][rows, before])
        if kwargs.get("position_ids") is not None:     # keep the caller's numbering, shifted over the slots
            pos = kwargs["position_ids"].expand(B, T)
            first = pos[rows[:, 0], offset][:, None]
            kwargs["position_ids"] = grow(pos + index - torch.arange(T, device=pos.device), slots - offset[:, None] + first)
        if labels is not None and labels.shape == (B, T):   # token labels (causal LM); sequence labels stay as they are
            # Slots are no targets; nor is the first real token: nothing predicts it without the prefix either.
            labels = labels.scatter(1, offset[:, None], -100)
            kwargs["labels"] = grow(labels, torch.full_like(slots, -100), fill=-100)
        self.slots, self.length, self.index, self.prompt_length = slots, T + n, index, T
        # A causal LM's logits come back one per input position, each the prediction of the next text token (the
        # last one: of the token after the infix), so losses and `generate` see the usual (B, T, vocab) layout.
        self.take = torch.cat([index[:, 1:] - 1, index.new_full((B, 1), T + n - 1)], 1) if model.can_generate() else None
        return (), kwargs

    def continue_cached(self, kwargs):
        """A decoding step after the first: the slots are in the cache already, the input is the new tokens only. The
        attention mask (the prompt's and the generated tokens') gets the slots at the places the first step put them,
        and the caller's position ids move past them, as the first step's did."""
        self.cached = True   # PreLayer leaves the new tokens' activations alone
        n, prompt = self.positions, self.prompt_length
        mask = kwargs.get("attention_mask")
        if mask is not None:
            grown = mask.new_zeros(mask.shape[0], mask.shape[1] + n)
            grown = grown.scatter(1, self.index, mask[:, :prompt]).scatter(1, self.slots, 1)
            grown[:, prompt + n:] = mask[:, prompt:]
            kwargs["attention_mask"] = grown
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + n
        return (), kwargs

    def align(self, model, args, kwargs, output):
        logits = getattr(output, "logits", None)
        # `generate` asks for the last position only (logits_to_keep=1): that one is already the right prediction.
        if self.take is not None and logits is not None and logits.dim() == 3 and logits.shape[1] == self.length:
            output.logits = logits.gather(1, self.take[..., None].expand(-1, -1, logits.shape[-1]))
        return output

    def replace(self, layer: int, module, args, kwargs):
        # The slots stay set after the forward: gradient checkpointing runs the layers again during backward.
        if self.cached:
            return args, kwargs   # a cached decoding step: the slots' activations are in the cache already
        if self.slots is None:
            raise RuntimeError("a PreLayer model must be called as a whole (its layers read the slots it inserts)")
        if args:
            return (_put(self.layers[layer][None], self.slots, args[0]),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": _put(self.layers[layer][None], self.slots, kwargs["hidden_states"])}


def blocks(model: nn.Module, info) -> list[nn.Module]:
    """The Transformer layers, in order: per layer index, the outermost module whose name carries it."""
    found = {}
    for name, module in model.named_modules():   # pre-order: a layer comes before its children
        found.setdefault(info.layer_of(name), module)
    found.pop(None, None)
    if sorted(found) != list(range(info.num_layers)):
        raise ConfigError(f"model {info.name}: layer_pattern finds layers {sorted(found)}, expected 0..{info.num_layers - 1}")
    return [found[i] for i in range(info.num_layers)]


@torch.no_grad()
def _real_words(model: nn.Module, n: int, per_layer: bool, info) -> torch.Tensor:
    emb = model.get_input_embeddings()
    vocab = emb.weight.shape[0]
    ids = torch.randint(min(1000, vocab // 2), vocab, (1, n), device=emb.weight.device)  # BERT keeps ids < 1000 unused
    if not per_layer:
        return emb(ids)[0].clone()
    was_training = model.training
    model.eval()
    hidden = model(input_ids=ids, output_hidden_states=True).hidden_states   # hidden[ℓ] is the input of layer ℓ
    model.train(was_training)
    return torch.stack([hidden[i][0] for i in range(info.num_layers)]).clone()


def attach(model: nn.Module, cfg: Config, info, per_layer: bool) -> Prefix:
    for p in model.parameters():
        p.requires_grad_(False)
    init = _real_words(model, cfg.l_p + cfg.l_i, per_layer, info)
    prefix = Prefix(cfg, info.prefix_after, None if per_layer else init, init if per_layer else None)
    model.add_module("prefix", prefix)
    model.register_forward_pre_hook(prefix.insert, with_kwargs=True)
    model.register_forward_hook(prefix.align, with_kwargs=True)
    if per_layer:
        for i, block in enumerate(blocks(model, info)):
            block.register_forward_pre_hook(partial(prefix.replace, i), with_kwargs=True)
    return prefix


def prefix_positions(model: nn.Module) -> int:
    """Input positions the prefix methods take from the model's context (0 for a model without them)."""
    prefix = getattr(model, "prefix", None)
    return prefix.positions if isinstance(prefix, Prefix) else 0


@register("prefix_embed", Config, size_param="l_p", count=lambda cfg, info, model: info.d_model * (cfg.l_p + cfg.l_i))
def apply_embed(model, cfg: Config, info):
    attach(model, cfg, info, per_layer=False)
    return model


# PreLayer stores exactly the paper's L·d·(l_p + l_i): one activation per slot and layer, from which each layer computes
# its own keys and values (a key/value prefix would store 2·L·d·(l_p + l_i) instead).
@register("prefix_layer", Config, size_param="l_p",
          count=lambda cfg, info, model: info.num_layers * info.d_model * (cfg.l_p + cfg.l_i))
def apply_layer(model, cfg: Config, info):
    attach(model, cfg, info, per_layer=True)
    return model
