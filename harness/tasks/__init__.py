"""Task pipelines. A task yaml names its `family`; the family's `build(task, model_cfg, tcfg) -> Pipeline` turns data
into what the training loop needs: tokenised training set, collate, model builder, evaluator (and a loss, if the model's
own is not the one to train on). Adding a task family = one module here + one entry in FAMILIES."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from harness.errors import unknown_choice

FAMILIES = {
    "glue": "harness.tasks.classification",
    "e2e": "harness.tasks.generation",
    "wikisql": "harness.tasks.generation",
}


@dataclass
class Pipeline:
    train: object                                  # a tokenised datasets.Dataset
    collate: Callable
    build_model: Callable[[], object]              # seeded by the caller
    evaluate: Callable[[object], dict]             # model → {metric: value}; first split unprefixed
    loss_fn: Callable | None = None                # (model, batch) → loss; None: the model's own `.loss`
    provenance: dict = field(default_factory=dict)
    tokenizer: object = None
    # (model, output_dir, record, tracker) → None, after training, in the method's evaluation context: may complete
    # record["metrics"] (a generation task decodes once here) and save outputs beside run.json.
    after_run: Callable | None = None
    # The per-epoch metric the best epoch is selected on when not the task's headline (a generation task that decodes
    # only after training selects nothing: its per-epoch evaluation is a cheap teacher-forced one).
    select_on: str | None = None


def build(task: dict, model_cfg: dict, tcfg) -> Pipeline:
    family = task.get("family")
    if family not in FAMILIES:
        raise unknown_choice("task.family", family, FAMILIES)
    return importlib.import_module(FAMILIES[family]).build(task, model_cfg, tcfg)
