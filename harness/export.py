"""`harness-export`: a LoRA run's adapter (LoRA or one of its family: rsLoRA, LoRA+, PiSSA, DoRA) as folders other
tools load, offline.

    harness-export outputs/sst2/lora/<run_id> --peft exported/sst2-lora        # peft adapter + tokenizer
    harness-export outputs/sst2/lora/<run_id> --merged exported/sst2-merged    # plain transformers model, BA merged
    harness-export RUN_DIR --peft OUT --hub-ready --base-model sentence-transformers/all-MiniLM-L6-v2

The run's model is rebuilt as the run built it (its config from run.json, torch seeded with its seed, so a random
`tiny` model gets the same frozen weights), the adapter (`adapter/`: LoRA matrices + task head) is loaded with an
exact key-set check (methods/lora_io.py), then written out. The peft folder names its base model
(`base_model_name_or_path`: the model's local folder, its hub id, or for a model without weights of its own a copy
saved in `OUT/base_model/`) and its `task_type`, so `AutoPeftModelForSequenceClassification.from_pretrained(OUT)` (or
`…ForCausalLM`) loads it without the network. `--hub-ready` adds a model card (README.md) for `huggingface-cli upload`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness import catalog
from harness.errors import HarnessError
from harness.io import read_json

log = logging.getLogger("harness")
PEFT_TASK_TYPES = {"classification": "SEQ_CLS", "generation": "CAUSAL_LM"}
PIPELINE_TAGS = {"classification": "text-classification", "generation": "text-generation"}


class ExportError(HarnessError):
    """A run folder that cannot be exported: one line, exit code 2."""


def read_run(run_dir: Path) -> dict:
    record = read_json(run_dir / "run.json")
    if record is None:
        raise ExportError(f"{run_dir / 'run.json'} not found: give a run's folder (outputs/<task>/<method>/<run_id>)")
    if record.get("status") != "completed":
        raise ExportError(f"{run_dir / 'run.json'} says status={record.get('status')!r}: only a completed run is exported")
    if not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise ExportError(f"{run_dir / 'adapter' / 'adapter_config.json'} not found: harness-export exports LoRA runs "
                          f"(lora and its family); this run's method is {record.get('method')!r}")
    return record


def rebuild(record: dict, run_dir: Path):
    """(model with the adapter loaded, LoRA config, ModelInfo, TaskConfig, base model before the adapter's weights:
    only for a `tiny` model, which has no weights to point at)."""
    import copy

    import torch

    from harness.models.info import ModelInfo
    from harness.tasks.config import task_config
    from methods import lora_io

    config = record["config"]
    task = task_config(dict(config["task"]))
    cache_dir = (config.get("trainer") or {}).get("cache_dir")
    torch.manual_seed(config["seed"])  # as the runner does before it builds the model: a tiny model's weights
    if task.kind == "classification":
        from harness.models.classifier import load_classifier
        from harness.tasks.classification import num_labels

        model = load_classifier(config["model"], num_labels(task), cache_dir)
    else:
        from harness.models.causal_lm import load_causal_lm

        model = load_causal_lm(config["model"], cache_dir)
    base = copy.deepcopy(model) if config["model"].get("source") == "tiny" else None
    info = ModelInfo.from_cfg(config["model"], model.config)
    model, cfg = lora_io.load_adapter(model, info, run_dir / "adapter")
    return model.eval(), cfg, info, task, base


def base_reference(model_cfg: dict, base, out: Path, given: str | None, cache_dir: str | None = None) -> str:
    """What `base_model_name_or_path` says: `--base-model`, else the model's own folder or hub id, else (a random
    tiny model) a copy of its frozen weights saved in OUT/base_model."""
    from harness.models.source import pretrained_path

    if given:
        return given
    if base is None:
        return pretrained_path(model_cfg, cache_dir)
    base.save_pretrained(str(out / "base_model"))
    return str((out / "base_model").resolve())


def model_card(record: dict, base: str, library: str, kind: str) -> str:
    """README.md for the Hub: metadata (base model, library, task) and the run's best metrics, with how to load it."""
    metrics, method = (record.get("metrics") or {}).get("best") or {}, record["config"]["method"]
    label = catalog.method_label(str(record.get("method"))).replace("^", " ")   # LoRA, DoRA, rsLoRA …
    cls = ("AutoPeftModelFor" if library == "peft" else "AutoModelFor") + (
        "SequenceClassification" if kind == "classification" else "CausalLM")
    lines = ["---", f"base_model: {base}", f"library_name: {library}", f"pipeline_tag: {PIPELINE_TAGS[kind]}",
             f"tags: [lora, lora-harness, {record['task']}]", "---", "",
             f"# {record['model']} + {label} on {record['task']}", "",
             f"Trained with lora-harness (run `{record['run_id']}`, seed {record['seed']}); {label} (LoRA: Hu et al. "
             f"2022, arXiv:2106.09685) with r={method.get('r')}, alpha={method.get('alpha')}, targets "
             f"{method.get('targets')}.", "",
             "| metric (best epoch) | value |", "|---|---:|", *(f"| {k} | {v:.4f} |" for k, v in metrics.items()), "",
             "```python", f"from {library} import {cls}", "", f'model = {cls}.from_pretrained("<this folder or repo>")',
             "```", ""]
    if ((record.get("config") or {}).get("model") or {}).get("pooling") == "mean":
        lines += ["The run's head read the mean of the last hidden states: call "
                  "`harness.models.use_mean_pooling(model)` (lora-harness) to reproduce its outputs.", ""]
    return "\n".join(lines)


def export(run_dir: Path, peft_out: Path | None, merged_out: Path | None, hub_ready: bool,
           base_model: str | None) -> list[Path]:
    """Writes the asked folders; returns them."""
    from harness.models.source import load_tokenizer
    from methods import lora_io

    record = read_run(run_dir)
    model, cfg, info, task, base = rebuild(record, run_dir)
    model_cfg, written = record["config"]["model"], []
    cache_dir = (record["config"].get("trainer") or {}).get("cache_dir")
    tokenizer = load_tokenizer(model_cfg, cache_dir)
    if model_cfg.get("pooling") == "mean":
        log.warning("model.pooling=mean: transformers and peft load this model with BERT's [CLS] pooler; call "
                    "harness.models.use_mean_pooling(model) after loading to reproduce the run's outputs")
    if peft_out:
        reference = base_reference(model_cfg, base, peft_out, base_model, cache_dir)
        try:
            lora_io.export_peft(model, cfg, info, peft_out, reference, PEFT_TASK_TYPES[task.kind])
        except ValueError as exc:
            raise ExportError(f"--peft {peft_out}: {exc}; --merged exports any LoRA run") from None
        written.append(_finish(peft_out, tokenizer, record, reference, "peft", hub_ready, task.kind))
    if merged_out:
        lora_io.export_merged(model, merged_out)
        written.append(_finish(merged_out, tokenizer, record, base_model or model_cfg["name"], "transformers",
                               hub_ready, task.kind))
    return written


def _finish(folder: Path, tokenizer, record: dict, base: str, library: str, hub_ready: bool, kind: str) -> Path:
    tokenizer.save_pretrained(str(folder))
    if hub_ready:
        if Path(base).is_absolute():
            log.warning("%s: base_model is a local path (%s); give --base-model HUB_ID for a folder others can load",
                        folder, base)
        (folder / "README.md").write_text(model_card(record, base, library, kind), encoding="utf-8")
    return folder


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a completed LoRA run's folder (holds run.json)")
    p.add_argument("--peft", metavar="OUT", type=Path, help="write a peft adapter folder (+ tokenizer) here")
    p.add_argument("--merged", metavar="OUT", type=Path, help="write a transformers model with BA merged in here")
    p.add_argument("--hub-ready", action="store_true", help="also a model card (README.md) for the Hugging Face Hub")
    p.add_argument("--base-model", metavar="NAME_OR_PATH",
                   help="base_model_name_or_path to write (default: the model's local folder or hub id)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not (args.peft or args.merged):
        parser().error("give --peft OUT, --merged OUT or both")
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    try:
        written = export(args.run_dir, args.peft, args.merged, args.hub_ready, args.base_model)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for folder in written:
        print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
