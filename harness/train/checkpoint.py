"""Checkpoints that let a run resume after a crash or `kill -9` exactly where it was.

A checkpoint is one file, `checkpoints/step-<step>.pt`, holding everything that decides what training does next: the
trainable parameters (never the frozen base), the buffers that training changes (AdaLoRA's importance and rank mask),
optimizer and scheduler state, the RNG states (python, numpy, torch, CUDA), the training order (the DataLoader
generator as it was when the current epoch began, and how many batches of that epoch are done: harness/train/sampler.py
replays the rest) and the progress so far (evaluations, the best one and its parameters, losses, cost counters).
It is written to a temporary file, fsynced and renamed, so a kill leaves the previous checkpoint intact; the newest
`keep` files stay. It is read with `torch.load(weights_only=True)`: tensors and plain containers only.

Why not `accelerator.save_state`: it writes the whole model, the frozen base included (1.5B parameters for
DeBERTa-XXL, where LoRA trains 4.7M), as a folder of files that a kill can leave half-written.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from harness.io import write_atomic

log = logging.getLogger(__name__)
NAME = re.compile(r"^step-(\d+)\.pt$")
BEST_FILE = "best.safetensors"   # what a completed run keeps: its best evaluation's trainable parameters


def rng_states() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def trainable_state(model) -> dict:
    """CPU copies of the parameters that train (the frozen ones are rebuilt from the model's source on resume)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, state: dict) -> None:
    """Copy saved trainable parameters into `model`, asserting the exact key set: a partial load would resume wrong."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise RuntimeError(f"checkpoint does not match the model's trainable parameters: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])


def _buffers(model) -> dict:
    """name → (module, attribute) of the buffers that training changes: a module lists them in `training_buffers`
    (AdaLoRA's importance averages and rank mask, methods/adalora.py)."""
    return {f"{name}.{b}".lstrip("."): (m, b) for name, m in model.named_modules()
            for b in getattr(m, "training_buffers", ())}


def buffer_state(model) -> dict:
    """CPU copies of the buffers that training changes, kept in checkpoints beside the trainable parameters."""
    return {key: getattr(m, b).detach().to("cpu", copy=True) for key, (m, b) in _buffers(model).items()}


def load_buffers(model, state: dict) -> None:
    """Copy saved training buffers into `model`, asserting the exact key set (as `load_trainable`)."""
    places = _buffers(model)
    if set(places) != set(state):
        raise RuntimeError(f"checkpoint does not match the model's training buffers: missing "
                           f"{sorted(set(places) - set(state))[:3]}, unexpected {sorted(set(state) - set(places))[:3]}")
    with torch.no_grad():
        for key, (m, b) in places.items():
            getattr(m, b).copy_(state[key])


class Checkpoints:
    """The checkpoint folder of one run: `save` every `every` optimiser steps (and at each epoch end, which the training
    loop asks for), `latest` to resume, `finish` to keep only the best trainable state once the run has completed."""

    def __init__(self, folder: str | Path, run_id: str, every: int | None = None, keep: int = 2):
        self.folder, self.run_id, self.every, self.keep = Path(folder), run_id, every, keep

    def due(self, step: int) -> bool:
        return bool(self.keep and self.every and step % self.every == 0)

    def files(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict) -> Path | None:
        if not self.keep:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step-{state['step']:08d}.pt"
        write_atomic(path, lambda tmp: torch.save({"run_id": self.run_id, **state}, tmp))
        for old in self.files()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> dict | None:
        """The newest readable checkpoint of this run (an unreadable or foreign one is skipped with a warning)."""
        for stale in self.folder.glob(".step-*.tmp") if self.folder.is_dir() else []:
            stale.unlink(missing_ok=True)  # a write that a kill interrupted
        for path in reversed(self.files()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
                continue
            if state.get("run_id") != self.run_id:
                log.warning("checkpoint %s belongs to run %s, not %s; ignored", path, state.get("run_id"), self.run_id)
                continue
            return state
        return None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self, best_state: dict | None, best_file: str | Path) -> None:
        """A completed run keeps only its best trainable parameters (safetensors) in place of its checkpoints."""
        if best_state:
            from safetensors.torch import save_file

            best_file = Path(best_file)
            tensors = {name: t.contiguous() for name, t in best_state.items()}
            write_atomic(best_file, lambda tmp: save_file(tensors, tmp, metadata={"run_id": self.run_id}))
        self.clear()
