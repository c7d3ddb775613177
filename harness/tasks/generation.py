"""Generation tasks on causal LMs: E2E NLG (Table 3), WikiSQL (Table 4), and any dataset module of the same shape.

Each training example is a (prompt, target) pair of texts: the prompt is the task's template (`task.prompt`) filled
with the example's fields; the model reads `prompt + target + EOS` and is trained on the target tokens only (prompt and
padding labelled -100), with the task's label smoothing (paper: 0.1 for GPT-2 on E2E). Evaluation decodes from the
prompt (beam search as the paper: beam 10, length penalty 0.9, no-repeat 4-gram; batched, left-padded) and scores with
the dataset's scorer (E2E's official metrics; WikiSQL's logical-form and execution accuracy).

Decoding is slow (minutes per pass on a CPU), so by default (`task.eval_every_epoch: false`) each epoch only measures the
teacher-forced dev loss and next-token accuracy, and decoding runs once, on the final model (`after_run`): the final
model is the result. With `task.eval_every_epoch: true` every epoch decodes and the best epoch on the headline wins, as
for GLUE. Either way the generations behind `metrics.best` are saved beside run.json (`generations.txt`, one line per
item, and `references.txt`), so `harness-score` re-scores them. An evaluation split without references (E2E's test MRs
as released without them) is decoded and saved, never scored: run.json's `evaluation` says so and `metrics.best` stays
empty; its epochs are not ranked (the latest counts).

A generation dataset module (harness/tasks/e2e.py is one) gives:

    read(task, split) -> (examples, provenance)    each example a dict: `input` (shown in samples), `target` (the
                                                   training target, and the reference), and its PROMPT_FIELDS
    score(task, outputs, items) -> {metric: value}
    PROMPT_FIELDS, METRICS, OPTIONS                what the yaml may use (checked at start-up)
    eval_items(task, examples), references_text(items), check_data(task)      optional (defaults below)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import flags
from harness.errors import DataError
from harness.models.causal_lm import load_causal_lm, special_ids
from harness.models.source import load_tokenizer, skeleton
from harness.tasks import decoding
from harness.tasks.config import dataset_module
from harness.tasks.pipeline import EvalItem, Pipeline

log = logging.getLogger("harness")


@dataclass
class EvalSet:
    """The evaluated items with their prompts, how they are scored, and references.txt's text."""

    items: list[EvalItem]
    prompts: list[str]
    score: Callable[[list[str]], dict]          # generations (one per item) → metrics
    references_text: str
    interval: Callable[[list[str]], dict | None] | None = None   # generations → the headline's bootstrap interval
    scored: bool = field(init=False, default=True)                # False: the split has no references

    def __post_init__(self):
        with_refs = sum(bool(item.references) for item in self.items)
        if 0 < with_refs < len(self.items):
            raise DataError(f"{len(self.items) - with_refs} of {len(self.items)} evaluation items have no reference: "
                            "a split is scored on all its items or decoded without references on all")
        self.scored = with_refs > 0 or not self.items


def default_items(task, examples: list[dict]) -> list[EvalItem]:
    return [EvalItem(ex["input"], ex, [ex["target"]], ex) for ex in examples]


def default_references_text(items: list[EvalItem]) -> str:
    """The official E2E scorer's format: one reference per line, items separated by a blank line."""
    return "\n".join("\n".join(item.references) + "\n" for item in items)


def load_data(task, tcfg) -> tuple[list[tuple[str, str]], EvalSet, dict]:
    """(training pairs, the evaluation set, provenance) from the dataset module."""
    module = dataset_module(task.dataset)
    train, train_source = module.read(task, task.splits["train"])
    dev, dev_source = module.read(task, task.eval_split)
    # the first trainer.max_eval_samples items (MRs / questions) in file order
    items = getattr(module, "eval_items", default_items)(task, dev)[:task.eval_limit(tcfg.max_eval_samples)]
    evalset = EvalSet(items, [task.render_prompt(item.fields) for item in items],
                      lambda outputs: module.score(task, outputs, items),
                      getattr(module, "references_text", default_references_text)(items),
                      (lambda outputs: module.interval(task, outputs, items)) if hasattr(module, "interval") else None)
    pairs = [(task.render_prompt(ex), ex["target"]) for ex in train]
    provenance = {task.splits["train"]: train_source, task.eval_split: dev_source, "eval_items": len(items)}
    return pairs, evalset, provenance


@dataclass
class Decoder:
    """Decodes the eval prompts, scores them, and keeps the generations behind the best score for `after_run`."""

    data: EvalSet
    tokenizer: object
    gcfg: GenerationConfig
    headline: str
    progress: bool = True
    best: dict = field(default_factory=dict)
    generations: list[str] | None = None       # behind `best`
    latest: list[str] | None = None            # of the latest call
    work: dict = field(default_factory=lambda: {"seconds": 0.0, "items": 0, "tokens": 0})   # every call's, summed
    journal: Path | None = None                # the final decoding's (after_run): resumable after an interruption

    def __call__(self, model) -> dict:
        was_training = model.training
        model.eval()
        since = time.perf_counter()
        # self.work gains the tokens and items decoded here (not those read back from the journal)
        outputs = decoding.generate(model, self.tokenizer, self.data.prompts, self.gcfg, self.progress, self.work,
                                    self.journal)
        self.work["seconds"] += time.perf_counter() - since
        model.train(was_training)
        scores, self.latest = (self.data.score(outputs) if self.data.scored else {}), outputs
        if self.generations is None or not self.data.scored or scores[self.headline] > self.best[self.headline]:
            self.best, self.generations = scores, outputs
        return scores

    def rates(self) -> dict:
        """Decoding's cost for the record: seconds, items and decoded tokens per second, over every decoding."""
        seconds = max(self.work["seconds"], 1e-9)
        return {"decode_seconds": round(self.work["seconds"], 6),
                "decode_items_per_second": round(self.work["items"] / seconds, 3),
                "decoded_tokens_per_second": round(self.work["tokens"] / seconds, 1)}


def after_run_fn(decoder: Decoder, decode_at_end: bool, samples: int) -> Callable:
    def after_run(model, output_dir: Path, record: dict, tracker) -> None:
        metrics = record["metrics"]
        headline = decoder.headline
        lost = not decode_at_end and decoder.best.get(headline) != metrics["best"].get(headline)
        if lost:  # a resumed run's best epoch decoded before the interruption: its generations are gone
            log.warning("the generations behind the best epoch were not kept (resumed run): decoding the final model, "
                        "which becomes the result")
        if decode_at_end or lost:  # the final model is the result: its scores join the last epoch's row
            decoder.journal = Path(output_dir) / "generations.partial.jsonl"   # a cut decoding resumes from it
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
        if data.scored:
            (Path(output_dir) / "references.txt").write_text(data.references_text, encoding="utf-8")
        rows = [[item.input, g, (item.references or [""])[0]] for item, g in zip(data.items, decoder.generations)]
        tracker.table("eval/generations", ["input", "generation", "reference"], rows[:samples])
        found = data.interval(decoder.generations) if data.interval and data.scored else None
        if found:
            metrics["interval"] = found
        metrics["generation_stats"] = flags.generation_stats(decoder.generations)
        if record.get("cost") is None:
            record["cost"] = {}
        record["cost"].update(decoder.rates())   # in place: the training's cost dict, which W&B's summary reads

    return after_run


def model_skeleton(task, model_cfg: dict, cache_dir: str | None = None):
    """The causal LM's modules without weights, for the start-up method × model check (None: config not local)."""
    from transformers import AutoModelForCausalLM

    return skeleton(model_cfg, AutoModelForCausalLM, cache_dir)


def build(task, model_cfg: dict, tcfg) -> Pipeline:
    tokenizer = load_tokenizer(model_cfg, tcfg.cache_dir)
    eos, pad = special_ids(tokenizer)
    pairs, evalset, provenance = load_data(task, tcfg)
    train = decoding.tokenize_pairs(pairs, tokenizer, tcfg.max_seq_len, eos, tcfg.max_train_samples, tcfg.subset_seed)
    references = [(p, ref) for p, item in zip(evalset.prompts, evalset.items) for ref in item.references]
    dev = decoding.tokenize_pairs(references, tokenizer, tcfg.max_seq_len, eos) if evalset.scored else None
    collate = decoding.make_collate(pad)
    decoder = Decoder(evalset, tokenizer, task.generation, task.headline, tcfg.progress)

    def evaluate(model) -> flags.Evaluation:  # without references there is nothing to measure before decoding
        metrics = decoding.teacher_forced(model, dev, collate, tcfg.batch_size) if evalset.scored else {}
        metrics = metrics | decoder(model) if task.eval_every_epoch else metrics
        return flags.Evaluation(metrics, examples=len(dev or ()))   # teacher-forced pairs (decoding: cost.decode_*)

    return Pipeline(
        train=train,
        collate=collate,
        build_model=lambda: load_causal_lm(model_cfg, tcfg.cache_dir),
        evaluate=evaluate,
        loss_fn=decoding.make_loss_fn(task.label_smoothing),
        provenance=provenance,
        tokenizer=tokenizer,
        after_run=after_run_fn(decoder, not task.eval_every_epoch, task.samples),
        select_on=None if task.eval_every_epoch else "token_accuracy",
        evaluated=evaluated_of(task, evalset),
    )


def evaluated_of(task, evalset: EvalSet) -> dict:
    """run.json's `evaluation`: the split, its items and references, the decoding; a split without references says
    that nothing was scored."""
    split = task.eval_split
    out = {"splits": [split], "items": {split: len(evalset.items)},
           "references": {split: sum(len(item.references) for item in evalset.items)},
           "decoding": vars(task.generation).copy(), "task_version": task.version}
    if not evalset.scored:
        out["note"] = (f"split {split} has no references: its {len(evalset.items)} items are decoded into "
                       "generations.txt (in the split's order) and not scored; metrics.best is empty")
    return out
