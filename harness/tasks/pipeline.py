"""What a task pipeline hands the runner: the training data and everything that evaluates and records it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


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
    # What was evaluated, for the run record: {split(s), items, decoding (generation), task_version}.
    evaluated: dict = field(default_factory=dict)
    # rows → the headline metric's bootstrap interval, from the best evaluation's per-example rows (Evaluation.predictions)
    interval: Callable[[list], dict] | None = None


@dataclass
class EvalItem:
    """One evaluated item of a generation task: what the model reads and what it is scored against."""

    input: str                     # shown in the samples table (the MR, the question)
    fields: dict                   # the prompt template's fields
    references: list[str]          # every reference (E2E: all of an MR's; WikiSQL: the gold query)
    example: dict | None = None    # the dataset's own record, for its scorer (WikiSQL: the SQL and table)


def subset_indices(total: int, n: int | None, seed: int) -> list[int]:
    """The indices of `n` of `total` examples drawn with `seed`, in their original order (all of them: n is None)."""
    import numpy as np

    if n is None or n >= total:
        return list(range(total))
    return np.sort(np.random.default_rng(seed).permutation(total)[:n]).tolist()


def seeded_subset(ds, n: int | None, seed: int):
    """`n` examples of a datasets.Dataset drawn with `seed`, in their original order (all of them when n is None)."""
    if n is None or n >= len(ds):
        return ds
    return ds.select(subset_indices(len(ds), n, seed))


def length_order(lengths: list[int]) -> list[int]:
    """Indices by increasing length, ties in their original order: consecutive batches of them pad little. Evaluation
    and decoding batch in this order and put the results back in the original one."""
    return sorted(range(len(lengths)), key=lengths.__getitem__)
