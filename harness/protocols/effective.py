"""What a run really does, in the paper's terms: the record's `effective` block.

A config says `trainer.batch_size: 16`; what the paper calls the batch is the global one, world size × per-device
batch × gradient accumulation (the released scripts' per-device 16 on 8 GPUs is a global 128: lora_paper.md lists the
trap). The block also holds the α that LoRA actually scales with (after a budget picked r), the warm-up in optimiser
steps whether it was given as a ratio or as steps, the sequence length, the learning rate, the training length and the
run it started from (`method.init_from`), so that a run says what it did and harness-report can check it against
the paper's protocol (harness/protocols/__init__.py `check`).
"""
from __future__ import annotations

import math

from harness.protocols import world_size

# Task settings that only generation tasks have: recorded where the task has them.
TASK_KEYS = {"label_smoothing": ("label_smoothing",), "num_beams": ("generation", "num_beams"),
             "length_penalty": ("generation", "length_penalty"),
             "no_repeat_ngram_size": ("generation", "no_repeat_ngram_size")}


def planned_steps(n_train: int, trainer: dict, world: int) -> tuple[int, int]:
    """(optimiser steps per epoch, total): each process reads 1/world of the data in batches of batch_size, and one
    optimiser step takes grad_accum of them (harness/train/loop.py `prepare`)."""
    per_epoch = math.ceil(math.ceil(n_train / (trainer["batch_size"] * world)) / (trainer.get("grad_accum") or 1))
    return per_epoch, trainer.get("max_steps") or trainer["epochs"] * per_epoch


def settings(config: dict, n_train: int, init: dict | None = None, world: int | None = None) -> dict:
    """The effective block of a run of `config` (the record's config: the method's size as it trained) on `n_train`
    training examples; `init`: the record's provenance.init_from, when it started from another run."""
    trainer, method, task = config["trainer"], config.get("method") or {}, config.get("task") or {}
    world = world or world_size()
    accum = trainer.get("grad_accum") or 1
    per_epoch, total = planned_steps(n_train, trainer, world)
    steps_given = trainer.get("warmup_steps")
    block = {"world_size": world, "per_device_batch": trainer["batch_size"], "grad_accum": accum,
             "global_batch": world * trainer["batch_size"] * accum, "lr": trainer["lr"], "epochs": trainer["epochs"],
             "max_steps": trainer.get("max_steps"), "train_examples": n_train, "steps_per_epoch": per_epoch,
             "steps_planned": total,
             "warmup_ratio": None if steps_given is not None else trainer["warmup_ratio"],
             "warmup_steps": steps_given if steps_given is not None else round(trainer["warmup_ratio"] * total),
             "weight_decay": trainer.get("weight_decay"), "max_seq_len": trainer["max_seq_len"],
             "r": method.get("r"), "alpha": method.get("alpha"), "targets": method.get("targets"),
             "init": (init or {}).get("task"), "init_from": (init or {}).get("run_dir"),
             "eval_split": (task.get("splits") or {}).get("eval")}
    for key, path in TASK_KEYS.items():
        node = task
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            block[key] = node
    return block
