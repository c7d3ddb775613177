"""Generation tasks on causal LMs: E2E NLG (Table 3) and WikiSQL (Table 4).

Each example is a (prompt, target) pair of texts; the model reads `prompt + target + EOS` and is trained on the target
tokens only (prompt and padding labelled -100), with the task's label smoothing (paper: 0.1 for GPT-2 on E2E).
Evaluation decodes from the prompt (beam search as the paper: beam 10, length penalty 0.9, no-repeat 4-gram; batched,
left-padded) and scores with the official metrics: E2E once per distinct MR against all its references, WikiSQL by
logical-form and execution accuracy.

Decoding is slow (minutes per pass on a CPU), so by default (`task.eval_every_epoch: false`) each epoch only measures the
teacher-forced dev loss and next-token accuracy, and decoding runs once, on the final model (`after_run`): the final
model is the result. With `task.eval_every_epoch: true` every epoch decodes and the best epoch on the headline wins, as
for GLUE. Either way the generations behind `metrics.best` are saved beside run.json (`generations.txt`, one line per
MR / question, and `references.txt`), so `harness-score` re-scores them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.causal_lm import load_causal_lm, load_tokenizer, special_ids
from harness.data import seeded_subset
from harness.errors import ConfigError, DataError
from harness.tasks import Pipeline, generation_data

log = logging.getLogger("harness")


@dataclass
class GenerationConfig:
    """`task.generation`: decoding settings (defaults: the paper's, Table 11)."""

    num_beams: int = 10
    length_penalty: float = 0.9
    no_repeat_ngram_size: int = 4
    max_new_tokens: int = 64
    batch_size: int = 16

    def __post_init__(self):
        for key, low in (("num_beams", 1), ("max_new_tokens", 1), ("batch_size", 1), ("no_repeat_ngram_size", 0)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"task.generation.{key} must be an integer ≥ {low}, got {value!r}")

    def hf(self, eos: int, pad: int):
        from transformers import GenerationConfig as HFGenerationConfig

        beams = dict(num_beams=self.num_beams, length_penalty=self.length_penalty) if self.num_beams > 1 else {}
        return HFGenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=eos,
                                  pad_token_id=pad, no_repeat_ngram_size=self.no_repeat_ngram_size, **beams)


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


def make_loss_fn(smoothing: float) -> Callable:
    def loss_fn(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return token_loss(logits, batch["labels"], smoothing)

    return loss_fn


@torch.no_grad()
def teacher_forced(model, ds: datasets.Dataset, collate, batch_size: int) -> dict:
    """Dev loss (plain NLL per target token, no smoothing) and next-token accuracy on the references: cheap per-epoch
    signals that need no decoding."""
    device = next(model.parameters()).device
    nll, correct, count = 0.0, 0, 0
    for batch in torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
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


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], gcfg: GenerationConfig, progress: bool = True) -> list[str]:
    """Decode every prompt, in batches of similar length (left padding, so all continue at the same position)."""
    eos, pad = special_ids(tokenizer)
    device = next(model.parameters()).device
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    hf_cfg = gcfg.hf(eos, pad)
    bar = tqdm(total=len(prompts), desc="generate", disable=not progress, dynamic_ncols=True, mininterval=1.0)
    for start in range(0, len(order), gcfg.batch_size):
        chunk = order[start:start + gcfg.batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=hf_cfg)
        for i, row in zip(chunk, out[:, width:]):
            outputs[i] = one_line(tokenizer.decode(row, skip_special_tokens=True))
        bar.update(len(chunk))
    bar.close()
    return outputs


@dataclass
class Decoder:
    """Decodes the eval prompts, scores them, and keeps the generations behind the best score for `after_run`."""

    data: generation_data.GenData
    tokenizer: object
    gcfg: GenerationConfig
    headline: str
    progress: bool = True
    best: dict = field(default_factory=dict)
    generations: list[str] | None = None       # behind `best`
    latest: list[str] | None = None            # of the latest call

    def __call__(self, model) -> dict:
        was_training = model.training
        model.eval()
        outputs = generate(model, self.tokenizer, self.data.eval_prompts, self.gcfg, self.progress)
        model.train(was_training)
        scores, self.latest = self.data.score(outputs), outputs
        if self.generations is None or scores[self.headline] > self.best[self.headline]:  # as fit: strictly better
            self.best, self.generations = scores, outputs
        return scores


def after_run_fn(decoder: Decoder, decode_at_end: bool, samples: int) -> Callable:
    def after_run(model, output_dir: Path, record: dict, tracker) -> None:
        metrics = record["metrics"]
        headline = decoder.headline
        lost = not decode_at_end and decoder.best.get(headline) != metrics["best"].get(headline)
        if lost:  # a resumed run's best epoch decoded before the interruption: its generations are gone
            log.warning("the generations behind the best epoch were not kept (resumed run): decoding the final model, "
                        "which becomes the result")
        if decode_at_end or lost:  # the final model is the result: its scores join the last epoch's row
            scores = decoder(model)
            decoder.best, decoder.generations = scores, decoder.latest
            last = metrics["per_epoch"][-1]
            last.update(scores)
            metrics["best"] = {k: v for k, v in last.items() if k not in ("epoch", "step", "train_loss")}
            metrics["final"] = {k: v for k, v in last.items() if k not in ("epoch", "step")}
            metrics["best_epoch"] = last["epoch"]
            tracker.log({f"eval/{k}": v for k, v in scores.items()}, step=last["step"])
        data = decoder.data
        (Path(output_dir) / "generations.txt").write_text("".join(g + "\n" for g in decoder.generations), encoding="utf-8")
        (Path(output_dir) / "references.txt").write_text(data.references_text, encoding="utf-8")
        rows = [[p, g, r] for p, g, r in zip(data.eval_inputs, decoder.generations, data.first_references)][:samples]
        tracker.table("eval/generations", ["input", "generation", "reference"], rows)

    return after_run


def check_data(task: dict) -> list[str]:
    return generation_data.missing_files(task)


def build(task: dict, model_cfg: dict, tcfg) -> Pipeline:
    gcfg = GenerationConfig(**(task.get("generation") or {}))
    smoothing = float(task.get("label_smoothing") or 0.0)
    if not 0 <= smoothing < 1:
        raise ConfigError(f"task.label_smoothing must be in [0, 1), got {smoothing}")
    decode_each_epoch = bool(task.get("eval_every_epoch", False))
    tokenizer = load_tokenizer(model_cfg, tcfg.cache_dir)
    eos, pad = special_ids(tokenizer)
    data = generation_data.load(task, tcfg)
    datasets.disable_progress_bars()
    train = tokenize_pairs(data.train_pairs, tokenizer, tcfg.max_seq_len, eos, tcfg.max_train_samples, tcfg.subset_seed)
    dev = tokenize_pairs(data.eval_pairs, tokenizer, tcfg.max_seq_len, eos)
    collate = make_collate(pad)
    decoder = Decoder(data, tokenizer, gcfg, task["headline"], tcfg.progress)

    def evaluate(model) -> dict:
        metrics = teacher_forced(model, dev, collate, tcfg.batch_size)
        return metrics | decoder(model) if decode_each_epoch else metrics

    return Pipeline(
        train=train,
        collate=collate,
        build_model=lambda: load_causal_lm(model_cfg, tcfg.cache_dir),
        evaluate=evaluate,
        loss_fn=make_loss_fn(smoothing),
        provenance=data.provenance,
        tokenizer=tokenizer,
        after_run=after_run_fn(decoder, not decode_each_epoch, int(task.get("samples", 20))),
        select_on=None if decode_each_epoch else "token_accuracy",
    )
