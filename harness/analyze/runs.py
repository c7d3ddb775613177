"""The run folders harness-analyze reads, and the matrices it measures in each.

A LoRA run (method `lora`) keeps its adapter in `adapter/` (methods/lora.py save_adapter): the run's model is rebuilt
as the run built it (harness/export.py `rebuild`: its model config, torch seeded with its seed, so that a random
`tiny` model gets the same W₀) and the adapter loaded onto it; each adapted matrix (a fused projection's slice per
weight type) then gives A (r × d_in), ΔW = (α/r)·BA and W₀. A full fine-tuning run keeps ΔW only with
`method.save_delta=true` (methods/full_ft.py: `adapter/delta.safetensors`). Every problem is one line (AnalyzeError).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import results
from harness.errors import HarnessError
from harness.io import read_json
from methods.full_ft import DELTA_CONFIG, DELTA_FILE

ADAPTER = Path("adapter") / "adapter.safetensors"
DELTA = Path("adapter") / DELTA_FILE


class AnalyzeError(HarnessError):
    """A run folder harness-analyze cannot read: one line naming it, exit code 2."""


@dataclass
class Run:
    folder: Path
    record: dict
    kind: str                      # "lora" | "full_ft"

    @property
    def seed(self) -> int:
        return self.record.get("seed")

    @property
    def r(self) -> int | None:
        return self.record["config"]["method"].get("r") if self.kind == "lora" else None


def classify(folder: Path, record: dict) -> tuple[str | None, str | None]:
    """(kind, None) for a run harness-analyze measures, (None, why not) for one it leaves out; a completed LoRA run
    without its adapter is an error: it should have one."""
    if record.get("status") != "completed":
        return None, f"status {record.get('status')!r}: only completed runs are analysed"
    method = record.get("method")
    if method == "lora":
        if not (folder / ADAPTER).is_file():
            raise AnalyzeError(f"{folder / ADAPTER} not found: this LoRA run's adapter is missing (was the run folder "
                               "copied without its adapter/ folder?)")
        return "lora", None
    if method == "full_ft":
        if (folder / DELTA).is_file():
            return "full_ft", None
        return None, "full FT without a saved ΔW (method.save_delta=true keeps it)"
    return None, f"method {method}: harness-analyze reads LoRA adapters and full FT's saved ΔW"


def parse_where(items) -> list[tuple[str, object]]:
    """`KEY=VALUE` filters on a run record's flattened keys (`config.method.r=8`, `seed=0`, `method=lora`); VALUE is
    read as YAML, and a list matches a record whose value is that list or one of its items (`config.method.r=[8,64]`).
    A record without KEY is not filtered by it (a LoRA setting leaves full FT runs in); a KEY no record has is an
    error."""
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AnalyzeError(f"--where {item!r}: give KEY=VALUE, e.g. config.method.r=8 or method=lora")
        out.append((key, yaml.safe_load(value)))
    return out


def _matches(flat: dict, where) -> bool:
    return all(key not in flat or flat[key] == value or (isinstance(value, list) and not isinstance(flat[key], list)
                                                         and flat[key] in value) for key, value in where)


def find_runs(paths, where=()) -> tuple[list[Run], list[tuple[str, str]]]:
    """(the runs to analyse, [(path, why left out)]) under `paths` (run folders, or folders searched for run.json)."""
    from harness.report.records import find_run_files

    files = []
    for raw in paths:
        found, _ = find_run_files([str(raw)])
        if not found:
            raise AnalyzeError(f"{raw}: no run.json there (give a run's folder, e.g. outputs/<task>/<method>/<run_id>, "
                               "or a folder that holds run folders)")
        files += found
    runs, skipped, keys = [], [], set()
    for path in sorted(set(files)):
        record = read_json(path)
        if not isinstance(record, dict) or "config" not in record:
            skipped.append((str(path), "not a readable run record"))
            continue
        flat = results.flatten(record)
        keys |= set(flat)
        if not _matches(flat, where):
            continue
        kind, why = classify(Path(path).parent, record)
        if kind:
            runs.append(Run(Path(path).parent, record, kind))
        else:
            skipped.append((str(path), why))
    unknown = [key for key, _ in where if key not in keys]
    if unknown:
        raise AnalyzeError(f"--where {unknown[0]}: no run record has this key; keys look like config.method.r, seed, "
                           "method, model")
    return runs, skipped


def base_model(run: Run) -> tuple[str, str]:
    """(what identifies the run's W₀, its name): the model config, and for a random `tiny` model also the seed that
    drew its weights."""
    model = run.record["config"]["model"]
    tiny = model.get("source") == "tiny"
    key = json.dumps({"model": model, "seed": run.seed if tiny else None}, sort_keys=True, default=str)
    return key, f"{run.record['model']}" + (f" drawn with seed {run.seed}" if tiny else "")


def check_one_base(runs: list[Run]) -> None:
    """Subspaces and ΔW compare only over one pretrained W₀: runs of different base models are refused."""
    models = {}
    for run in runs:
        models.setdefault(base_model(run), []).append(run)
    if len(models) > 1:
        listed = ", ".join(f"{name} ({len(group)} runs, e.g. {group[0].folder})" for (_, name), group in models.items())
        raise AnalyzeError(f"runs with different base models: {listed}; analyse each model's runs separately "
                           "(or choose with --where model=NAME)")


def _labelled(entries: list[dict]) -> list[dict]:
    """A matrix is named by (layer, weight type); two modules of one type in a layer (`mlp`: up and down projection)
    add their module's last name parts."""
    seen = {}
    for e in entries:
        seen.setdefault((e["layer"], e["type"]), []).append(e)
    for group in seen.values():
        for e in group if len(group) > 1 else ():
            e["type"] = f"{e['type']} ({'.'.join(e['module'].split('.')[-2:])})"
    return sorted(entries, key=lambda e: (e["layer"] if e["layer"] is not None else -1, e["type"], e["module"]))


def lora_matrices(run: Run) -> list[dict]:
    """{layer, type, module, a, delta, w0} per adapted matrix (a fused projection: per adapted slice), W₀ and ΔW
    out × in, from the rebuilt model with the run's adapter loaded."""
    from harness.export import rebuild
    from methods.lora import LoraLayer, is_conv1d

    try:
        model, _, info, _, _ = rebuild(run.record, run.folder)
    except (KeyError, OSError, ValueError) as exc:
        raise AnalyzeError(f"{run.folder}: its adapter does not load onto its model ({exc})".splitlines()[0]) from None
    entries = []
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLayer):
            continue
        w0 = layer.base_layer.weight.detach()
        w0 = w0.T if is_conv1d(layer.base_layer) else w0
        for i, (start, size, delta) in enumerate(layer.delta_weight()):
            part = (start, size) if (start, size) != (0, layer.out_features) else (None, None)
            index, wtype = info.matrix_of(name, *part)
            a = layer.lora_A[i * layer.r:(i + 1) * layer.r]
            entries.append({"layer": index, "type": wtype, "module": name, "a": a.detach().clone(),
                            "delta": delta.detach().clone(), "w0": w0[start:start + size].clone()})
    return _labelled(entries)


def delta_matrices(run: Run) -> list[dict]:
    """{layer, type, module, delta} per matrix full fine-tuning saved (methods/full_ft.py save_delta)."""
    from safetensors.torch import load_file

    meta = read_json(run.folder / "adapter" / DELTA_CONFIG)
    if not meta or "matrices" not in meta:
        raise AnalyzeError(f"{run.folder / 'adapter' / DELTA_CONFIG} is missing or unreadable: it names the saved ΔW")
    tensors = load_file(str(run.folder / DELTA))
    missing = sorted(set(meta["matrices"]) - set(tensors))
    if missing:
        raise AnalyzeError(f"{run.folder / DELTA}: no tensor for {missing[0]} that {DELTA_CONFIG} names")
    return _labelled([{"layer": e["layer"], "type": e["type"], "module": e["module"], "delta": tensors[key].float()}
                      for key, e in meta["matrices"].items()])
