"""`method.init_from=<run>`: start a run from another run's trained parameters, as the paper starts MRPC, RTE and
STS-B from the MNLI-adapted LoRA (Table 2).

What is loaded is the source run's `best.safetensors`: every parameter that trained, at its best evaluation (the
checkpoint its reported number comes from; harness/train/checkpoint.py `finish` keeps it for every completed run, so
every method can be a source, not only those with a `save` hook). The method's own parameters must match this run's
exactly, key for key and shape for shape (the same method at the same size and targets): anything else is an error,
never a partial load. The task head is loaded where a tensor of the same name and shape exists (RoBERTa's
classifier.dense from MNLI; not its 3-way out_proj into a 2-way task) and left as initialised otherwise; the record's
`provenance.init_from` lists both.

`<run>` is a run's folder (it holds run.json), a folder of runs, or a glob of folders: among the completed runs found
there, the one of the same model and method is taken, and when several are, the one with the same seed.
"""
from __future__ import annotations

import glob
from pathlib import Path

from harness.errors import ConfigError
from harness.io import read_json, sha256_file

WEIGHTS = "best.safetensors"


def _run_folders(spec: str) -> list[Path]:
    matches = sorted(glob.glob(spec)) if any(c in spec for c in "*?[") else [spec]
    folders = []
    for match in map(Path, matches):
        if (match / "run.json").is_file():
            folders.append(match)
        elif match.is_dir():
            folders += sorted(p.parent for p in match.glob("*/run.json"))
    return folders


def resolve(config: dict) -> tuple[Path, dict] | None:
    """(the source run's folder, its record) for `method.init_from`, None when it is not set; a ConfigError naming
    what was looked for when no single completed run of this model and method (and seed) is found there."""
    spec = (config.get("method") or {}).get("init_from")
    if spec is None:
        return None
    key = "method.init_from"
    folders = _run_folders(str(spec))
    if not folders:
        raise ConfigError(f"{key}={spec}: no run folder there (a folder with run.json, a folder of them, or a glob)")
    model, method, seed = ((config.get("model") or {}).get("name"), (config.get("method") or {}).get("name"),
                           config.get("seed"))
    records = [(f, read_json(f / "run.json") or {}) for f in folders]
    done = [(f, r) for f, r in records if r.get("status") == "completed"]
    fits = [(f, r) for f, r in done if r.get("model") == model and r.get("method") == method]
    wanted = f"model {model} and method {method}"
    if len(fits) > 1:
        fits = [(f, r) for f, r in fits if r.get("seed") == seed]
        wanted = f"model {model}, method {method}, seed {seed}"
    if len(fits) != 1:
        seen = ", ".join(f"{f.name} ({r.get('status')}: {r.get('model')}/{r.get('task')}/{r.get('method')}, "
                         f"seed {r.get('seed')})" for f, r in records[:4]) + (" …" if len(records) > 4 else "")
        raise ConfigError(f"{key}={spec}: {len(fits) or 'no'} completed run(s) of {wanted} there (init_from "
                          f"starts from one run of the same model and method); found: {seen}")
    folder, record = fits[0]
    if not (folder / WEIGHTS).is_file():
        raise ConfigError(f"{key}={spec}: {folder / WEIGHTS} is missing (a completed run keeps its best parameters "
                          "there)")
    return folder, record


def saved_shapes(folder: Path) -> dict[str, tuple]:
    """Name → shape of the tensors in the source's weights file, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS), framework="pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}


def mismatch(model, info, saved: dict[str, tuple]) -> str | None:
    """Why the source's method parameters do not fit this model's (keys or shapes), or None."""
    ours = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad and not info.is_head(n)}
    theirs = {n: s for n, s in saved.items() if not info.is_head(n)}
    if set(ours) != set(theirs):
        missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        return f"missing {missing[:3]}{' …' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}" \
               f"{' …' if len(unexpected) > 3 else ''}"
    wrong = sorted(n for n in ours if ours[n] != theirs[n])
    return f"shapes differ: {wrong[0]} {theirs[wrong[0]]} there, {ours[wrong[0]]} here" if wrong else None


def check(model, info, folder: Path, spec) -> None:
    """The exact key-set (and shape) assertion, before anything is loaded (start-up validation runs it on a
    weightless skeleton of the model)."""
    why = mismatch(model, info, saved_shapes(folder))
    if why:
        raise ConfigError(f"method.init_from={spec}: the parameters of run {folder} do not match this run's method "
                          f"parameters ({why}); init_from needs the same method, size and targets")


def load(model, info, folder: Path, record: dict, spec) -> dict:
    """Copy the source's method parameters (all of them, asserted) and the head tensors whose shapes match into
    `model`; returns what the run record keeps (provenance.init_from)."""
    import torch
    from safetensors.torch import load_file

    check(model, info, folder, spec)
    state = load_file(str(folder / WEIGHTS))
    params = dict(model.named_parameters())
    head_loaded, head_skipped = [], []
    with torch.no_grad():
        for name, p in params.items():
            if not p.requires_grad:
                continue
            fits = name in state and tuple(state[name].shape) == tuple(p.shape)
            if info.is_head(name):
                (head_loaded if fits else head_skipped).append(name)
            if fits:
                p.copy_(state[name])
    return {"spec": str(spec), "run_dir": str(folder.resolve()), "run_id": record.get("run_id"),
            "model": record.get("model"), "task": record.get("task"), "method": record.get("method"),
            "seed": record.get("seed"), "file": WEIGHTS, "sha256": sha256_file(folder / WEIGHTS),
            "tensors": sum(1 for n in state if not info.is_head(n)), "head_loaded": sorted(head_loaded),
            "head_skipped": sorted(head_skipped)}
