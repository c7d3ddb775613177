"""Sequence classification / regression (GLUE and any GLUE-format task): the dataset module reads each split into
sentence (pair) columns, they are tokenised (cached on disk) and dynamically padded, a fresh task head sits on the
model, and the evaluator scores every evaluation split with the task's metrics (harness/metrics/glue.py).

The tokenised full split is cached under `trainer.cache_dir/tokenized/<key>`, the key hashing the data file's sha256
(or hub fingerprint), the tokenizer and `max_seq_len`; a training subset (`trainer.max_train_samples`) is a seeded
selection from the cached split, so every seed and size shares one cache entry. Writes go to a temporary folder renamed
into place, so concurrent first use by two runs is safe (the loser of the race discards its copy). A data file whose
tokenised copy is cached is not parsed again (its sha256 is the key): parsing SST-2's 67,349 training rows takes 0.13 s.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from harness.errors import DataError
from harness.flags import Evaluation, prediction_stats
from harness.metrics import glue as glue_metrics
from harness.models.classifier import head_config, load_classifier
from harness.models.source import load_tokenizer, skeleton
from harness.tasks.config import dataset_module
from harness.stats import bootstrap_interval
from harness.tasks.pipeline import Pipeline, length_order, seeded_subset, subset_indices

CACHE_VERSION = 1


def num_labels(task) -> int:
    return 1 if task.labels is None else len(task.labels)


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
        "version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cache_folder(source: dict, tokenizer, max_len: int, cache_dir: str) -> Path:
    return Path(cache_dir) / "tokenized" / _cache_key(source, tokenizer, max_len)


def cached_split(source: dict, tokenizer, max_len: int, cache_dir: str | None) -> datasets.Dataset | None:
    """The tokenised split cached for this source (its sha256 or fingerprint), tokenizer and length, or None."""
    final = cache_dir and _cache_folder(source, tokenizer, max_len, cache_dir)
    return datasets.load_from_disk(str(final)) if final and (final / "dataset_info.json").exists() else None


def tokenize_cached(columns: dict, source: dict, tokenizer, max_len: int, cache_dir: str | None) -> datasets.Dataset:
    cached = cached_split(source, tokenizer, max_len, cache_dir)
    if cached is not None:
        return cached
    raw = datasets.Dataset.from_dict(columns)
    ds = raw.map(_tokenize_fn(tokenizer, max_len), batched=True, remove_columns=raw.column_names,
                 desc="tokenising", load_from_cache_file=False)
    if not cache_dir:
        return ds
    final = _cache_folder(source, tokenizer, max_len, cache_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    ds.save_to_disk(str(tmp))
    try:
        os.rename(tmp, final)
    except OSError:  # another run got there first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(final))


def tokenised_split(reader, task, split: str, tokenizer, tcfg) -> tuple[datasets.Dataset, dict]:
    """(the split tokenised, its provenance). Where the dataset module can tell a split's source without reading it
    (glue.source: the file's sha256) and that source's tokenised copy is cached, the file is not parsed again: the
    copy is what reading it would give (the same bytes, by the sha256 in the cache key)."""
    source = reader.source(task, split) if hasattr(reader, "source") else None
    cached = cached_split(source, tokenizer, tcfg.max_seq_len, tcfg.cache_dir) if source else None
    if cached is not None:
        return cached, source
    columns, source = reader.read(task, split)
    return tokenize_cached(columns, source, tokenizer, tcfg.max_seq_len, tcfg.cache_dir), source


def load_splits(task, tokenizer, tcfg) -> tuple[datasets.Dataset, dict, dict, dict]:
    """(training set, {eval split: tokenised split}, {eval split: the rows' indices in the split}, provenance); the
    first eval split holds the headline metric."""
    datasets.disable_progress_bars()  # one-off tokenisation; the training bar is the one that matters
    reader = dataset_module(task.dataset)
    provenance, splits = {}, {}
    for split in [task.splits["train"], *task.splits["eval"]]:
        splits[split], provenance[split] = tokenised_split(reader, task, split, tokenizer, tcfg)
    train = seeded_subset(splits.pop(task.splits["train"]), tcfg.max_train_samples, tcfg.subset_seed)
    ids = {name: subset_indices(len(ds), tcfg.max_eval_samples, 0) for name, ds in splits.items()}
    evals = {name: ds.select(ids[name]) if len(ids[name]) < len(ds) else ds for name, ds in splits.items()}
    if len(train) == 0:
        raise DataError(f"task {task.name}: the training split is empty")
    return train, evals, ids, provenance


SORT_BY_LENGTH = True   # evaluation batches of similar length; tests turn it off to show that no number changes


def by_length(ds) -> tuple[datasets.Dataset, torch.Tensor]:
    """`ds` in increasing length (harness/tasks/pipeline.py: length_order), and where each of its examples went:
    `sorted_rows[back]` are the rows in `ds`'s own order again."""
    order = length_order([len(ids) for ids in ds["input_ids"]]) if SORT_BY_LENGTH else list(range(len(ds)))
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return ds.select(order), back


def split_logits(model, ds, back: torch.Tensor, batch_size: int, collate, bar: dict) -> tuple:
    """(logits, labels) of every example of the length-sorted `ds`, in the split's original order (`back`), so that
    the per-example rows and every metric are those of an unsorted evaluation (tests/test_eval_throughput.py)."""
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in tqdm(torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate), **bar):
        labels.append(batch.pop("labels"))
        logits.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
    return torch.cat(logits)[back], torch.cat(labels)[back]


def evaluator(task, evals: dict, batch_size: int, collate, ids: dict, progress: bool = False):
    """model → Evaluation: every eval split scored (the first unprefixed), with the first split's prediction
    statistics (flags), per-example rows {id, label, prediction, scores} (`ids`: each row's index in its split) and
    its loss (`.loss`: cross-entropy, or mean squared error for regression, as the model's own loss). Batches are
    sorted by length (less padding); results are put back in the split's order."""
    regression = task.labels is None
    sorted_evals = {split: by_length(ds) for split, ds in evals.items()}

    def evaluate(model) -> Evaluation:
        out, stats, rows, loss = {}, {}, None, None
        for i, (split, (ds, back)) in enumerate(sorted_evals.items()):
            bar = {"desc": f"eval {split}", "leave": False, "disable": not progress, "dynamic_ncols": True}
            logits, labels = split_logits(model, ds, back, batch_size, collate, bar)
            preds = (logits.squeeze(-1) if regression else logits.argmax(-1)).numpy()
            scores = glue_metrics.compute(task.metrics, preds, labels.numpy())
            out.update({(k if i == 0 else f"{split}/{k}"): v for k, v in scores.items()})
            if i == 0:  # the split that holds the headline metric
                stats = prediction_stats(preds, labels.numpy(), regression)
                rows = prediction_rows(ids[split], labels.numpy(), preds, logits)
                loss = eval_loss(logits, labels, regression)
        evaluation = Evaluation(out, stats, rows, examples=sum(len(ds) for ds in evals.values()))
        evaluation.loss = loss
        return evaluation

    return evaluate


def eval_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> float:
    """The loss the model trains on, over the split: mean squared error (regression) or cross-entropy."""
    if regression:
        return float(torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float()))
    return float(torch.nn.functional.cross_entropy(logits, labels.long()))


def prediction_rows(ids, labels, preds, logits) -> list[dict]:
    """One row per evaluated example: its index in the split, the gold label, the prediction, the logits (5 decimals)."""
    return [{"id": int(i), "label": y.item(), "prediction": p.item(), "scores": [round(float(v), 5) for v in row]}
            for i, y, p, row in zip(ids, labels, preds, logits.tolist())]


def headline_interval(task, rows: list[dict], seed: int = 0) -> dict:
    """The bootstrap interval of the headline metric over the evaluated examples (harness/stats.py)."""
    metric = glue_metrics.FAST[task.headline]
    preds = np.array([r["prediction"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    found = bootstrap_interval(lambda idx: metric(preds[idx], labels[idx]), len(rows), seed=seed)
    return {"metric": task.headline, "value": metric(preds, labels), **found}


def model_skeleton(task, model_cfg: dict, cache_dir: str | None = None):
    """The classifier's modules without weights, for the start-up method × model check (None: config not local)."""
    from transformers import AutoModelForSequenceClassification

    return skeleton(model_cfg, AutoModelForSequenceClassification, cache_dir, **head_config(num_labels(task)))


def build(task, model_cfg: dict, tcfg) -> Pipeline:
    from transformers import DataCollatorWithPadding

    tokenizer = load_tokenizer(model_cfg, tcfg.cache_dir)
    train, evals, ids, provenance = load_splits(task, tokenizer, tcfg)
    collate = DataCollatorWithPadding(tokenizer)
    return Pipeline(
        train=train,
        collate=collate,
        build_model=lambda: load_classifier(model_cfg, num_labels(task), tcfg.cache_dir),
        evaluate=evaluator(task, evals, tcfg.eval_batch_size, collate, ids, tcfg.progress),
        interval=lambda rows: headline_interval(task, rows),
        provenance=provenance,
        tokenizer=tokenizer,
        evaluated={"splits": list(evals), "items": {name: len(ds) for name, ds in evals.items()},
                   "task_version": task.version},
    )
