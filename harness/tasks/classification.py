"""Sequence classification / regression (GLUE): a fresh task head on the encoder, dynamic padding, GLUE metrics."""
from __future__ import annotations

from pathlib import Path

import torch

from harness import data as data_mod
from harness.errors import DataError
from harness.flags import Evaluation, prediction_stats
from harness.metrics import glue as glue_metrics
from harness.models import load_classifier, load_tokenizer
from harness.tasks import Pipeline, glue


def evaluator(task: dict, evals: dict, batch_size: int, collate):
    regression = task["labels"] is None

    def evaluate(model) -> Evaluation:
        device = next(model.parameters()).device
        out, stats = {}, {}
        for i, (split, ds) in enumerate(evals.items()):
            preds, labels = [], []
            for batch in torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate):
                labels.append(batch.pop("labels"))
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
                preds.append(logits.squeeze(-1) if regression else logits.argmax(-1))
            preds, labels = torch.cat(preds).numpy(), torch.cat(labels).numpy()
            scores = glue_metrics.compute(task["metrics"], preds, labels)
            out.update({(k if i == 0 else f"{split}/{k}"): v for k, v in scores.items()})
            if i == 0:  # the split that holds the headline metric
                stats = prediction_stats(preds, labels, regression)
        return Evaluation(out, stats)

    return evaluate


def check_data(task: dict) -> list[str]:
    """Start-up check, before any model is loaded: every split's file is present and has a data row (malformed rows
    are found when the pipeline reads the file, still before the model loads). Hub data is checked when downloaded."""
    if not task.get("data_dir"):
        return []
    problems = []
    for split in [task["splits"]["train"], *task["splits"]["eval"]]:
        try:
            path = glue.find_split_file(task["data_dir"], task["glue_dir"], split)
        except DataError as exc:
            problems.append(str(exc))
            if not (Path(task["data_dir"]) / "glue" / task["glue_dir"]).is_dir():
                break  # the task's folder is missing: one problem, not one per split
            continue
        if not _has_rows(path, task["tsv"]["header"]):
            problems.append(f"{path}: split {split!r} has no data rows (task.data_dir={task['data_dir']})")
    return problems


def _has_rows(path: Path, header: bool) -> bool:
    """Whether a tsv holds at least one non-blank line after its header: reads two lines, not the file."""
    lines = glue._lines(path)
    try:
        seen = sum(1 for _, _line in zip(range(2), (line for line in lines if line.strip())))
    finally:
        lines.close()
    return seen >= (2 if header else 1)


def build(task: dict, model_cfg: dict, tcfg) -> Pipeline:
    from transformers import DataCollatorWithPadding

    tokenizer = load_tokenizer(model_cfg)
    data = data_mod.load_classification(task, tokenizer, tcfg)
    collate = DataCollatorWithPadding(tokenizer)
    num_labels = 1 if task["labels"] is None else len(task["labels"])
    return Pipeline(
        train=data.train,
        collate=collate,
        build_model=lambda: load_classifier(model_cfg, num_labels),
        evaluate=evaluator(task, data.evals, tcfg.eval_batch_size, collate),
        provenance=data.provenance,
        tokenizer=tokenizer,
    )
