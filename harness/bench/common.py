"""What the benchmarks share: a model yaml and a method yaml read from the shipped config (harness/catalog.py), the
seeded classifier they are measured on, a method applied to it as a run applies it, a run's config composed as
`harness-run` composes it, the summary of repeated measurements, and the Markdown + JSON pair each command writes."""
from __future__ import annotations

import json
import platform
import shlex
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from harness import catalog

BENCH_DIR = Path("reports") / "bench"


class BenchError(Exception):
    """A bad option: the command prints one line naming it and exits with code 2."""


def model_config(name: str) -> dict:
    found = catalog.model_yaml(name)
    if found is None:
        raise BenchError(f"--model {name!r}: no harness/conf/model/{name}.yaml; choices: "
                         f"{', '.join(catalog.choices('model'))}")
    return found


def method_config(name: str, overrides: list[str] = ()) -> dict:
    """The method's yaml (its defaults) with `key=value` overrides, as Hydra would compose `method=name`."""
    cfg = OmegaConf.create(catalog.method_meta(name) or {"name": name})
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=True)


def load_model(model_name: str | dict):
    """(classifier with a 2-label head, ModelInfo), seeded: every call builds the same weights. `model_name`: a model
    yaml's name, or a model config itself (gpu-check's RoBERTa-large-sized random encoder)."""
    import torch

    from harness.models.classifier import load_classifier
    from harness.models.info import ModelInfo

    model_cfg = model_config(model_name) if isinstance(model_name, str) else model_name
    torch.manual_seed(0)
    model = load_classifier(model_cfg, 2)
    return model, ModelInfo.from_cfg(model_cfg, model.config)


def adapt(model, info, method_name: str, overrides: list[str] = ()):
    """(model with the method applied, its config): sized to a budget when the yaml or overrides set one."""
    import methods

    method, cfg = methods.build(method_config(method_name, overrides))
    cfg = method.sized(cfg, info, model)
    return method.apply(model, cfg, info), method, cfg


def compose(overrides: list[str]):
    """The run config `harness-run OVERRIDES…` composes (Hydra's compose API on the shipped conf/), for a command that
    runs the harness in-process. A bad override is one line (BenchError)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.run import CONF_DIR   # also registers the ${run_id:} resolver the config uses

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise BenchError(f"overrides {' '.join(overrides)!r}: {str(exc).splitlines()[0]}") from None


def composed(overrides: list[str]) -> dict:
    """The composed run config as a plain dict, resolved (what `harness.runner.run` records)."""
    return OmegaConf.to_container(compose(overrides), resolve=True)


def run_parts(config: dict, out_dir: Path):
    """(task pipeline, checked config) as harness-run builds them: the config validated (harness/validate.py), the
    task's tokenised examples, its evaluator, its model builder."""
    from harness import tasks, validate

    checked = validate.check(config, out_dir)
    return tasks.build(checked.task, config["model"], checked.trainer), checked


def run_model(pipeline, checked, config: dict):
    """(model, the method's sized config): the model with the method applied and the head training, seeded as a run
    seeds it (harness/runner.py: adapt)."""
    import torch

    from harness.models.info import ModelInfo

    torch.manual_seed(config["seed"])
    model = pipeline.build_model()
    info = ModelInfo.from_cfg(config["model"], model.config)
    method_cfg = checked.method.sized(checked.method_cfg, info, model)
    model = checked.method.apply(model, method_cfg, info)
    info.train_head(model)
    return model, method_cfg


def summary(values: list[float]) -> dict:
    """Median, min, max and the spread ((max − min) / median, %) of repeated measurements (rounds)."""
    median = statistics.median(values)
    return {"median": median, "min": min(values), "max": max(values), "n": len(values),
            "spread_pct": round(100 * (max(values) - min(values)) / median, 2) if median else 0.0,
            "values": list(values)}


def paired(values: list[float], reference: list[float]) -> dict:
    """Paired ratios value / reference of the same round: their median and min–max over rounds. Load that drifts
    between rounds hits both sides of a pair alike, so the ratio is steadier than the ratio of two medians."""
    ratios = [v / r for v, r in zip(values, reference)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "values": ratios}


def verdict(value: float | None, target: float, at_most: bool = True) -> str:
    """`met` / `missed` (value ≤ target, or ≥ with at_most=False); `not measured` without a value."""
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "missed"


def command_line(name: str, argv: list[str] | None) -> str:
    """The exact command as typed (recorded in every output)."""
    return f"harness-bench {name} " + shlex.join(sys.argv[1:] if argv is None else argv)


def machine() -> str:
    import torch

    return f"{platform.machine()}, {platform.processor() or platform.platform()}, torch {torch.__version__}"


def write_outputs(out_dir: str | Path, stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """`<out_dir>/<stem>.json` and `.md`; prints the Markdown and where both went."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"{stem}.json", out / f"{stem}.md"
    paths[0].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {paths[0]} and {paths[1]}", file=sys.stderr)
    return paths


def finish(name: str, argv, out_dir, stem: str, meta: dict, results: dict, markdown) -> int:
    """Every command's end: its meta (the exact command line first, the machine last) and results as
    `<out_dir>/<stem>.json`, `markdown(meta)` as `.md` beside it; returns the exit code, 0."""
    meta = {"command": command_line(name, argv), **meta, "machine": machine()}
    write_outputs(out_dir, stem, {"command": meta["command"], "meta": meta, **results}, markdown(meta))
    return 0


def markdown_table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    """Lines of a Markdown table; `align`: one of l / r per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]
