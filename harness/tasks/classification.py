"""Sequence classification / regression (GLUE): a fresh task head on the encoder, dynamic padding, GLUE metrics."""
from __future__ import annotations

import torch

from harness import data as data_mod
from harness.metrics import glue as glue_metrics
from harness.models import load_classifier, load_tokenizer
from harness.tasks import Pipeline


def evaluator(task: dict, evals: dict, batch_size: int, collate):
    regression = task["labels"] is None

    def evaluate(model) -> dict:
        device = next(model.parameters()).device
        out = {}
        for i, (split, ds) in enumerate(evals.items()):
            preds, labels = [], []
            for batch in torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate):
                labels.append(batch.pop("labels"))
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
                preds.append(logits.squeeze(-1) if regression else logits.argmax(-1))
            scores = glue_metrics.compute(task["metrics"], torch.cat(preds).numpy(), torch.cat(labels).numpy())
            out.update({(k if i == 0 else f"{split}/{k}"): v for k, v in scores.items()})
        return out

    return evaluate


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
