"""The harness's metrics as local 🤗 evaluate modules, loaded offline by path (hub scripts cannot be fetched here):

    import evaluate
    from harness.evaluate_modules import module_path
    glue = evaluate.load(module_path("glue"), "mrpc")          # config: the GLUE task (cola ... stsb)
    glue.compute(predictions=[1, 0, 1], references=[1, 1, 1])  # {"accuracy": ..., "f1": ...}
    evaluate.load(module_path("e2e")).compute(predictions=outputs, references=[[ref, ...], ...])
    evaluate.load(module_path("wikisql")).compute(predictions=queries, references=question_ids, data_dir=DIR)

Each module calls the harness's own scorer (harness/metrics/), so its numbers are the run record's. `trainer_metrics`
is a `compute_metrics` for the transformers Trainer.
"""
from __future__ import annotations

from pathlib import Path

MODULES = ("glue", "e2e", "wikisql")


def module_path(name: str) -> str:
    """The script `evaluate.load` reads for `name` (glue, e2e, wikisql)."""
    if name not in MODULES:
        raise ValueError(f"no evaluate module {name!r}; valid choices: {', '.join(MODULES)}")
    return str(Path(__file__).resolve().parent / f"harness_{name}.py")


def trainer_metrics(task: str):
    """`Trainer(compute_metrics=trainer_metrics("sst2"))`: (logits, label ids) → the GLUE task's metrics through the
    local evaluate module (argmax for classification, the single logit for regression, STS-B)."""
    import evaluate
    import numpy as np

    metric = evaluate.load(module_path("glue"), task)

    def compute_metrics(eval_pred) -> dict:
        logits, labels = eval_pred
        logits = np.asarray(logits)
        predictions = logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1)
        return metric.compute(predictions=predictions, references=labels)

    return compute_metrics
