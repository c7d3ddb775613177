"""LoRA artifacts: the adapter saved by `methods.lora.save_adapter` (safetensors + config) loaded back with an exact
key-set check; an export to a peft adapter folder (`peft.PeftModel.from_pretrained` loads it, and
`AutoPeftModelFor…` too when it names its base model); a merged full model for inference. `harness-export`
(harness/export.py) does both from a run's folder."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from harness.train.checkpoint import trainable_state
from methods.lora import Config, LoraLayer, is_conv1d, inject, lora_layers, unwrap_merged


def load_adapter(model, info, folder):
    """Inject LoRA as saved and load its weights; the saved key set must equal the model's trainable key set."""
    folder = Path(folder)
    meta = json.loads((folder / "adapter_config.json").read_text())
    cfg = Config(**meta["config"])
    inject(model, cfg, info)
    info.train_head(model)  # the task head was trained too
    state = load_file(str(folder / "adapter.safetensors"))
    expected = set(trainable_state(model))
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise KeyError(f"{folder}: adapter keys do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return model, cfg


def export_peft(model, cfg: Config, info, folder, base_model: str | None = None, task_type: str | None = None) -> Path:
    """A peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors) with identical outputs. Sliced
    fused projections have no peft equivalent and are refused. A mean-pooled head (`model.pooling=mean`) is not part
    of a peft folder: call `harness.models.use_mean_pooling` on the base model before loading the adapter onto it.
    `base_model` (a local folder or hub id) and `task_type` (peft's: SEQ_CLS, CAUSAL_LM) are what
    `AutoPeftModelForSequenceClassification` / `…ForCausalLM` read to load the base model and pick the class."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state, targets, head, conv1d = {}, [], set(), False
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            conv1d |= is_conv1d(module.base_layer)   # GPT-2's Conv1D stores its weight in×out: peft's fan_in_fan_out
            if module.slices != [(0, module.out_features)]:
                raise ValueError(f"{name}: a sliced fused projection cannot be expressed as a peft LoRA adapter")
            targets.append(name)
            state[f"base_model.model.{name}.lora_A.weight"] = module.lora_A.detach().cpu().contiguous()
            state[f"base_model.model.{name}.lora_B.weight"] = module.lora_B.detach().cpu().contiguous()
    for name, p in model.named_parameters():
        if info.is_head(name):
            state[f"base_model.model.{name}"] = p.detach().cpu().contiguous()
            head.add(next(h for h in info.head if ("." + h + ".") in ("." + name)))
    if cfg.bias != "none":
        raise ValueError("export to peft supports bias='none' only")
    config = {"peft_type": "LORA", "r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout,
              "target_modules": sorted(targets), "bias": "none", "modules_to_save": sorted(head) or None,
              "init_lora_weights": True, "fan_in_fan_out": conv1d, "task_type": task_type, "inference_mode": True,
              "base_model_name_or_path": base_model}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, str(folder / "adapter_model.safetensors"))
    return folder


def merge_and_unwrap(model):
    """Merge every LoRA update into its base weight and put the base modules back: a plain model, no added latency."""
    for _, layer in unwrap_merged(model):
        layer._saved = None  # the merge is final here
    assert not lora_layers(model)
    return model


def export_merged(model, folder) -> Path:
    """A full model folder (`save_pretrained`) with the LoRA update merged in, for inference with plain transformers."""
    merge_and_unwrap(model).save_pretrained(str(folder))
    return Path(folder)
