"""The paper's training protocols as data, applied to whatever model × task × method is composed.

    harness-run model=roberta-base task=glue/cola method=lora +protocol=paper     # batch 32, 80 epochs, lr 4e-4, ...

`harness/protocols/<name>.yaml` holds each protocol's values, per (model, task, method) cell, with the table each comes
from (one place: the runner applies it, harness-report checks runs against it, tests check it against the paper
notes). The preset (`harness/conf/protocol/paper.yaml`) only names it: `protocol: {name, setup, varies}`. `prepare`
applies the cell's values to the resolved config before the run's identity is computed (harness/outputs.py hashes
the prepared config, so the output folder and the record agree):

- a setting the user gives on the command line wins over the protocol and is recorded (`overridden`), and the run is
  flagged `protocol_deviation`; keys listed in `protocol.varies` (what an experiment varies on purpose, a rank sweep's
  r) win too, are recorded as `varied` and not flagged;
- `batch` is the GLOBAL batch: the per-device `trainer.batch_size` becomes batch / (world size × grad_accum);
- `init` (the task of the run a method starts from) cannot be set by a protocol, which knows no folder: a cell that
  starts from MNLI needs `method.init_from` (a run folder, a folder of runs or a glob);
- a value the paper has but the notes do not transcribe (`missing`) must be given on the command line;
- a cell no row covers is a start-up error naming the cell and the covered ones.

Problems are returned, not raised, so that start-up validation (harness/validate.py) lists them with the others.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

FOLDER = Path(__file__).resolve().parent
SETUPS = ("main", "houlsby")
# Protocol key → the config path it sets (the preset's values land there).
KEYS = {"batch": "trainer.batch_size", "epochs": "trainer.epochs", "lr": "trainer.lr",
        "warmup_ratio": "trainer.warmup_ratio", "warmup_steps": "trainer.warmup_steps",
        "max_seq_len": "trainer.max_seq_len", "r": "method.r", "alpha": "method.alpha", "targets": "method.targets",
        "init": "method.init_from", "label_smoothing": "task.label_smoothing",
        "num_beams": "task.generation.num_beams", "length_penalty": "task.generation.length_penalty",
        "no_repeat_ngram_size": "task.generation.no_repeat_ngram_size", "eval_split": "task.splits.eval"}
# Other config paths whose command-line override gives a key (the lr through the method's own, r through a budget).
GIVEN_BY = {"lr": ("method.lr",), "r": ("method.budget",)}
# The name of a key in a run's `effective` block (harness/protocols/effective.py) where it differs.
EFFECTIVE = {"batch": "global_batch"}


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    return yaml.safe_load((FOLDER / f"{name}.yaml").read_text(encoding="utf-8"))


@dataclass
class Cell:
    """One (model, task, method) of a protocol: the values for that task, where each comes from, what is missing."""

    protocol: str
    setup: str
    model: str
    task: str
    method: str
    row: str
    source: str
    values: dict
    sources: dict
    missing: dict

    @property
    def label(self) -> str:
        return f"{self.model} × {self.task} × {self.method}"


def _for_task(value, task: str):
    return value.get(task) if isinstance(value, dict) else value


def cell(name: str, setup: str, model: str, task: str, method: str) -> Cell | None:
    """The cell of protocol `name` in `setup` for model × task × method, or None where no row covers it."""
    for row in load(name)["rows"]:
        if setup in row["setups"] and model in row["models"] and task in row["tasks"] and method in row["methods"]:
            values = {key: _for_task(value, task) for key, value in (row.get("values") or {}).items()}
            sources = {key: (row.get("sources") or {}).get(key, row["source"]) for key in values}
            return Cell(name, setup, model, task, method, row["id"], row["source"], values, sources,
                        dict(row.get("missing") or {}))
    return None


def covered(name: str, setup: str) -> str:
    """The cells a protocol covers in one setup, a group per row: `roberta-base × {mnli, …} × {lora, lora_peft}`."""
    return "; ".join(f"{'/'.join(r['models'])} × {{{', '.join(r['tasks'])}}} × {{{', '.join(r['methods'])}}}"
                     for r in load(name)["rows"] if setup in r["setups"])


def spec_of(config: dict) -> dict | None:
    """The config's `protocol` node as {name, setup, varies}; a bare name (`protocol: paper`): the main setup."""
    spec = config.get("protocol")
    if spec is None:
        return None
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    return {"name": spec.get("name"), "setup": spec.get("setup") or "main", "varies": list(spec.get("varies") or [])}


def spec_problems(spec: dict) -> list[str]:
    from harness.errors import unknown_choice

    if spec["name"] not in names():
        return [str(unknown_choice("protocol.name", spec["name"], names()))]
    if spec["setup"] not in SETUPS:
        return [str(unknown_choice("protocol.setup", spec["setup"], SETUPS))]
    return [str(unknown_choice("protocol.varies", key, KEYS)) for key in spec["varies"] if key not in KEYS]


def command_line(given: list[str] | None = None) -> list[str]:
    """The command line's overrides: `given`, else those of the Hydra job running now (none outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if given is not None or not HydraConfig.initialized():
        return list(given or [])
    return list(HydraConfig.get().overrides.task)


def explicit_paths(overrides) -> set[str]:
    """The config paths set by command-line overrides (`trainer.lr=1e-3`, `+method.init_from=…`); group choices
    (`task=glue/cola`, `+protocol=paper`) set none."""
    paths = set()
    for item in overrides or ():
        key = str(item).split("=", 1)[0].lstrip("+~")
        if "=" in str(item) and "/" not in key and not key.startswith("hydra"):
            paths.add(key)
    return paths


def _get(config: dict, path: str):
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(config: dict, path: str, value) -> bool:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        return False
    node[leaf] = value
    return True


def world_size() -> int:
    """Processes training together (`accelerate launch` / torchrun set WORLD_SIZE); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE") or 1)


@dataclass
class Prepared:
    config: dict
    problems: list
    info: dict | None      # the record's `protocol` block (None without a protocol)


def prepare(config: dict, overrides=(), world: int | None = None) -> Prepared:
    """`config` with the protocol's values applied (a copy), the problems found, and what was done (see the module
    docstring). A config without `protocol` comes back as it is."""
    spec = spec_of(config)
    if spec is None:
        return Prepared(config, [], None)
    problems = spec_problems(spec)
    if problems:
        return Prepared(config, problems, None)
    model, task, method = (str((config.get(g) or {}).get("name")) for g in ("model", "task", "method"))
    found = cell(spec["name"], spec["setup"], model, task, method)
    if found is None:
        return Prepared(config, [f"protocol {spec['name']} ({spec['setup']} setup) has no values for {model} × {task} "
                                 f"× {method}; it covers: {covered(spec['name'], spec['setup'])}"], None)
    config = copy.deepcopy(config)
    given = explicit_paths(overrides)
    info = {**spec, "cell": found.label, "row": found.row, "source": found.source,
            "applied": {}, "overridden": {}, "varied": {}, "given": {}}
    problems = []
    for key, value in found.values.items():
        problems += _apply(config, found, key, value, given, info, world or world_size())
    lacking = [key for key in found.missing if not _given(key, given)]
    info["given"] = {key: _get(config, KEYS[key]) for key in found.missing if key not in lacking}
    if lacking:
        problems.append(f"protocol {spec['name']} ({found.label}): the reference notes lack "
                        f"{', '.join(KEYS[k] for k in lacking)} (see harness/protocols/{spec['name']}.yaml: "
                        f"{found.missing[lacking[0]]}); give each on the command line")
    return Prepared(config, problems, info)


def _given(key: str, given: set) -> bool:
    return any(path in given for path in (KEYS[key], *GIVEN_BY.get(key, ())))


def _apply(config: dict, found: Cell, key: str, value, given: set, info: dict, world: int) -> list[str]:
    """Set one key of the cell, unless the command line (or protocol.varies) says otherwise; problems found."""
    path = KEYS[key]
    if _given(key, given) or key in info["varies"]:
        info["varied" if key in info["varies"] else "overridden"][key] = _get(config, path)
        return []
    if key == "init":
        if value is not None and _get(config, path) is None:
            return [f"protocol {found.protocol} ({found.label}) starts from the {_label(value)}-adapted run "
                    f"({found.sources[key]}): give method.init_from=<that run's folder, a folder of runs or a glob, "
                    f"e.g. multirun/glue_table2/{value}-{found.method}-*>"]
        value = _get(config, path) if value is not None else None
    elif key == "batch":
        accum = int(_get(config, "trainer.grad_accum") or 1)
        if value % (world * accum):
            return [f"protocol {found.protocol} ({found.label}): the global batch {value} is not divisible by world "
                    f"size × trainer.grad_accum = {world} × {accum}"]
        value //= world * accum
    if not _set(config, path, value):
        return [f"protocol {found.protocol} ({found.label}): {path} is not a setting of this configuration "
                f"(row {found.row})"]
    info["applied"][key] = value
    return []


def _label(task: str) -> str:
    from harness import catalog

    return str(catalog.task_meta(task).get("label") or task)


def same(paper, used) -> bool:
    """Equal as settings: numbers within float noise, weight-type lists in any order."""
    if isinstance(paper, (int, float)) and isinstance(used, (int, float)) and not isinstance(used, bool):
        return math.isclose(paper, used, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(paper, (list, tuple)) and isinstance(used, (list, tuple)):
        return sorted(map(str, paper)) == sorted(map(str, used))
    return paper == used


def check(model: str, task: str, method: str, effective: dict, spec: dict | None) -> dict | None:
    """A run's effective settings against its protocol cell (`spec`: the run's `protocol` node; none asked: the main
    setup of `paper`): {cell, source, deviations [{key, paper, used, source, varied}], unverified [{key, used, why}],
    flagged}; None when no protocol covers the cell. Flagged: the run asked for the protocol and deviates from it
    outside what it varies on purpose."""
    asked = spec is not None
    spec = spec or {"name": "paper", "setup": "main", "varies": []}
    if spec_problems(spec):
        return None
    found = cell(spec["name"], spec["setup"], model, task, method)
    if found is None:
        return None
    deviations = []
    for key, paper in found.values.items():
        used = effective.get(EFFECTIVE.get(key, key))
        if not same(paper, used):
            deviations.append({"key": key, "paper": paper, "used": used, "source": found.sources[key],
                               "varied": key in spec["varies"]})
    unverified = [{"key": key, "used": effective.get(EFFECTIVE.get(key, key)), "why": why}
                  for key, why in found.missing.items()]
    return {"protocol": spec["name"], "setup": spec["setup"], "cell": found.label, "source": found.source,
            "deviations": deviations, "unverified": unverified,
            "flagged": asked and any(not d["varied"] for d in deviations)}


# How a deviation names its key where the key alone would hide what it is.
SHOWN = {"batch": "global batch", "init": "starts from"}


def describe(deviation: dict) -> str:
    """`alpha 16 (paper 8)`, `global batch 128 (paper 16)`, `starts from none (paper mnli)`; `, varied` for what an
    experiment varies on purpose."""
    varied = ", varied" if deviation.get("varied") else ""
    name = SHOWN.get(deviation["key"], deviation["key"])
    return f"{name} {show(deviation['used'])} (paper {show(deviation['paper'])}{varied})"


def show(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "{" + ",".join(map(str, value)) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def flags(block: dict | None) -> list[str]:
    """The run-record flag of a run that asked for a protocol and deviates from it (a command-line override)."""
    return ["protocol_deviation"] if block and block.get("flagged") else []
