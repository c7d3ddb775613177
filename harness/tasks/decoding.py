"""Text pairs on a causal LM: encoding (prompt + target + EOS, the loss on the target only), batching, the loss
with label smoothing, the teacher-forced dev signals, and batched decoding. Used by the generation pipeline
(harness/tasks/generation.py) for every generation dataset alike."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.errors import DataError
from harness.models.causal_lm import special_ids
from harness.tasks.pipeline import length_order, seeded_subset
from methods.prefix import prefix_positions

log = logging.getLogger("harness")


def encode_pair(tokenizer, prompt: str, target: str, max_len: int, eos: int) -> dict:
    """input_ids = prompt + target + EOS, labels = -100 on the prompt; a target too long is cut at `max_len`."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [eos]
    if len(p) >= max_len:
        raise DataError(f"a prompt of {len(p)} tokens leaves no room for its target within trainer.max_seq_len={max_len}:"
                        f" {prompt[:80]!r}...")
    ids = (p + t)[:max_len]
    return {"input_ids": ids, "labels": [-100] * len(p) + ids[len(p):], "truncated": len(p) + len(t) > max_len}


def tokenize_pairs(pairs: list[tuple[str, str]], tokenizer, max_len: int, eos: int, limit: int | None = None,
                   seed: int = 0) -> datasets.Dataset:
    """Tokenised pairs; `limit` keeps a seeded subset (trainer.max_train_samples), chosen before tokenising."""
    datasets.disable_progress_bars()  # one-off tokenisation; the training bar is the one that matters
    ds = datasets.Dataset.from_dict({"prompt": [p for p, _ in pairs], "target": [t for _, t in pairs]})
    ds = seeded_subset(ds, limit, seed).map(lambda ex: encode_pair(tokenizer, ex["prompt"], ex["target"], max_len, eos),
                                            remove_columns=["prompt", "target"], load_from_cache_file=False)
    cut = sum(ds["truncated"])
    if cut:  # said, never silent: a cut target has no EOS to learn from
        log.warning("%d of %d targets cut at trainer.max_seq_len=%d", cut, len(ds), max_len)
    return ds.remove_columns("truncated")


def make_collate(pad: int) -> Callable:
    """Right padding for training (attention mask 0, labels -100 on the padding)."""
    def collate(rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def token_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0, reduction: str = "mean"):
    """Next-token cross-entropy: position i predicts token i+1; -100 labels (prompt, padding) are skipped."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                           label_smoothing=smoothing, reduction=reduction)


def _forward(model, batch: dict):
    """The logits of a batch. A model with a prefix method also reads the labels: they tell where each row's prompt
    ends, so that an infix sits between prompt and target, as at decoding (methods/prefix.py)."""
    extra = {"labels": batch["labels"]} if prefix_positions(model) else {}
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra).logits


def make_loss_fn(smoothing: float) -> Callable:
    def loss_fn(model, batch):
        return token_loss(_forward(model, batch), batch["labels"], smoothing)

    return loss_fn


@torch.no_grad()
def teacher_forced(model, ds: datasets.Dataset, collate, batch_size: int) -> dict:
    """Dev loss (plain NLL per target token, no smoothing) and next-token accuracy on the references: cheap per-epoch
    signals that need no decoding."""
    device = next(model.parameters()).device
    nll, correct, count = 0.0, 0, 0
    for batch in torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = _forward(model, batch)
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        nll += float(token_loss(logits, batch["labels"], reduction="sum"))
        correct += int((logits[:, :-1].argmax(-1) == labels)[keep].sum())
        count += int(keep.sum())
    return {"loss": nll / max(count, 1), "token_accuracy": correct / max(count, 1)}


def one_line(text: str) -> str:
    """The first non-empty line, whitespace collapsed: one output per line of generations.txt."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return next((line for line in lines if line), "")


def new_tokens(rows: torch.Tensor, eos: int) -> int:
    """Tokens decoded in `rows` (the generated part of `generate`'s output): each row up to and including its first
    EOS, the positions after it being padding."""
    ended = rows == eos
    first = torch.where(ended.any(1), ended.int().argmax(1) + 1, torch.full_like(rows[:, 0], rows.shape[1]))
    return int(first.sum())


def journal_key(model, prompts: list[str], gcfg) -> str:
    """What a decoding journal's outputs depend on: the trained parameters' values (every parameter that requires a
    gradient, by name), the prompts and the decoding settings."""
    digest = hashlib.sha256()
    for name, param in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
        digest.update(name.encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest.update(json.dumps([prompts, sorted((k, repr(v)) for k, v in vars(gcfg).items())]).encode())
    return digest.hexdigest()


def read_journal(path: Path | None, key: str) -> dict[int, str]:
    """The outputs a journal holds for `key` ({} when absent, for another key, or unreadable past its last whole line)."""
    if path is None or not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]).get("key") != key:
            return {}
    except json.JSONDecodeError:
        return {}
    done = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:   # a line cut by the interruption: that batch is decoded again
            break
        done[int(entry["i"])] = entry["text"]
    return done


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], gcfg, progress: bool = True, counts: dict | None = None,
             journal: Path | None = None) -> list[str]:
    """Decode every prompt, in batches of similar length (left padding, so all continue at the same position), each
    step reading the keys and values of the earlier positions from the KV cache (`use_cache`); `counts["tokens"]`,
    when given, gains the number of tokens decoded, `counts["items"]` the prompts decoded here and `counts["reused"]`
    those taken from the journal.

    `journal`: a file each decoded batch is appended to, so that a decoding cut short (a session's end, a signal)
    resumes where it stopped: a later call with the same trained parameters, prompts and settings (journal_key) skips
    the batches the journal holds. The batches are the same either way (length order, then batch_size), so a resumed
    decoding gives the outputs an uninterrupted one gives. The journal is removed once every prompt is decoded."""
    eos, pad = special_ids(tokenizer)
    device = next(model.parameters()).device
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = length_order([len(ids) for ids in encoded])
    outputs: list[str] = [""] * len(prompts)
    hf_cfg = gcfg.hf(eos, pad)
    key = journal_key(model, prompts, gcfg) if journal is not None else ""
    done = read_journal(journal, key)
    if journal is not None:
        if done:
            log.info("decoding resumes: %d of %d items from %s", len(done), len(prompts), journal)
        kept = [json.dumps({"key": key})] + [json.dumps({"i": i, "text": t}) for i, t in sorted(done.items())]
        journal.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    if counts is not None:
        counts["reused"] = counts.get("reused", 0) + len(done)
    bar = tqdm(total=len(prompts), desc="generate", disable=not progress, dynamic_ncols=True, mininterval=1.0)
    for start in range(0, len(order), gcfg.batch_size):
        chunk = order[start:start + gcfg.batch_size]
        if all(i in done for i in chunk):
            for i in chunk:
                outputs[i] = done[i]
            bar.update(len(chunk))
            continue
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=hf_cfg)
        for i, row in zip(chunk, out[:, width:]):
            outputs[i] = one_line(tokenizer.decode(row, skip_special_tokens=True))
        if counts is not None:
            counts["tokens"] = counts.get("tokens", 0) + new_tokens(out[:, width:], eos)
            counts["items"] = counts.get("items", 0) + len(chunk)
        if journal is not None:
            with journal.open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps({"i": i, "text": outputs[i]}) + "\n" for i in chunk))
        bar.update(len(chunk))
    bar.close()
    if journal is not None:
        journal.unlink(missing_ok=True)
    return outputs
