"""Task data → tokenised `datasets.Dataset`s (cached on disk) → dynamically padded batches.

The tokenised full split is cached under `trainer.cache_dir/tokenized/<key>`, the key hashing the data file's sha256 (or
hub fingerprint), the tokenizer and `max_seq_len`; a training subset (`trainer.max_train_samples`) is a seeded selection
from the cached split, so every seed and size shares one cache entry. Writes go to a temporary folder renamed into
place, so concurrent first use by two runs is safe (the loser of the race discards its copy).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from harness.errors import DataError
from harness.tasks import glue


@dataclass
class TaskData:
    train: datasets.Dataset
    evals: dict[str, datasets.Dataset]          # split name → tokenised split, the first one holds the headline metric
    provenance: dict = field(default_factory=dict)


def _tokenize_fn(tokenizer, max_len):
    def fn(batch):
        texts = [batch["text_a"]]
        if batch["text_b"][0] is not None:
            texts.append(batch["text_b"])
        enc = tokenizer(*texts, truncation=True, max_length=max_len)
        enc["labels"] = batch["label"]
        return enc

    return fn


def _cache_key(source: dict, tokenizer, max_len: int) -> str:
    ident = {
        "data": source.get("sha256") or source.get("fingerprint") or source,
        "tokenizer": getattr(tokenizer, "name_or_path", ""),
        "vocab": len(tokenizer),
        "class": type(tokenizer).__name__,
        "max_len": max_len,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def tokenize_cached(columns: dict, source: dict, tokenizer, max_len: int, cache_dir: str | None) -> datasets.Dataset:
    if cache_dir:
        final = Path(cache_dir) / "tokenized" / _cache_key(source, tokenizer, max_len)
        if (final / "dataset_info.json").exists():
            return datasets.load_from_disk(str(final))
    raw = datasets.Dataset.from_dict(columns)
    ds = raw.map(_tokenize_fn(tokenizer, max_len), batched=True, remove_columns=raw.column_names,
                 desc="tokenising", load_from_cache_file=False)
    if cache_dir:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        ds.save_to_disk(str(tmp))
        try:
            os.rename(tmp, final)
        except OSError:  # another run got there first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
        return datasets.load_from_disk(str(final))
    return ds


def seeded_subset(ds: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    if n is None or n >= len(ds):
        return ds
    idx = np.random.default_rng(seed).permutation(len(ds))[:n]
    return ds.select(np.sort(idx))


def load_classification(task: dict, tokenizer, tcfg) -> TaskData:
    datasets.disable_progress_bars()  # one-off tokenisation; the training bar is the one that matters
    provenance = {}
    splits = {}
    for split in [task["splits"]["train"], *task["splits"]["eval"]]:
        columns, source = glue.load_split(task, split)
        provenance[split] = source
        splits[split] = tokenize_cached(columns, source, tokenizer, tcfg.max_seq_len, tcfg.cache_dir)
    train = seeded_subset(splits.pop(task["splits"]["train"]), tcfg.max_train_samples, tcfg.subset_seed)
    evals = {name: seeded_subset(ds, tcfg.max_eval_samples, 0) for name, ds in splits.items()}
    if len(train) == 0:
        raise DataError(f"task {task['name']}: the training split is empty")
    return TaskData(train, evals, provenance)
