"""Tasks as parts. A task is its yaml (conf/task/, validated into a TaskConfig: harness/tasks/config.py) plus one
dataset module that owns its reader, its prompt fields and its scoring (glue.py, e2e.py, wikisql.py, or a module of
your own named by `dataset:`). The yaml's `kind` picks the pipeline that turns it into what the training loop needs:

    classification.py   tokenised sentence (pairs), a task head, GLUE metrics
    generation.py       prompt → target pairs on a causal LM, decoding, the dataset's scorer

`build(task, model_cfg, tcfg) -> Pipeline` (harness/tasks/pipeline.py). A new GLUE-format task is one yaml; a new
generation dataset is one yaml plus one small module (README: "Add a task")."""
from __future__ import annotations

import importlib

PIPELINES = {"classification": "harness.tasks.classification", "generation": "harness.tasks.generation"}


def pipeline_module(task):
    """The pipeline module for `task.kind` (TaskConfig has checked the kind)."""
    return importlib.import_module(PIPELINES[task.kind])


def build(task, model_cfg: dict, tcfg):
    return pipeline_module(task).build(task, model_cfg, tcfg)
