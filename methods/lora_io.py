"""LoRA artifacts: the adapter saved by `methods.lora.save_adapter` (safetensors + config) loaded back with an exact
key-set check; an export to a peft adapter folder (`peft.PeftModel.from_pretrained` loads it, and
`AutoPeftModelFor…` too when it names its base model); a merged full model for inference. `harness-export`
(harness/export.py) does both from a run's folder."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from harness.train.checkpoint import trainable_state
from methods.lora import Config, LoraLayer, inject, is_conv1d, lora_layers, unwrap_merged
from methods.lora_variants import PISSA_KEYS, subtract_initial


def load_adapter(model, info, folder):
    """Inject LoRA as saved and load its weights; the saved key set must equal the model's trainable key set (plus
    PiSSA's initial factors, from which the frozen residual W − s·B₀A₀ is rebuilt exactly, without an SVD)."""
    folder = Path(folder)
    meta = json.loads((folder / "adapter_config.json").read_text())
    cfg = Config(**meta["config"])
    inject(model, dataclasses.replace(cfg, init="kaiming") if cfg.init == "pissa" else cfg, info)
    info.train_head(model)  # the task head was trained too
    state = load_file(str(folder / "adapter.safetensors"))
    if cfg.init == "pissa":
        for name, layer in model.named_modules():
            if isinstance(layer, LoraLayer):
                subtract_initial(layer, *(state.pop(f"{name}.{key}") for key in PISSA_KEYS))
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
    `AutoPeftModelForSequenceClassification` / `…ForCausalLM` read to load the base model and pick the class.
    rsLoRA and DoRA map to peft's use_rslora and use_dora; a PiSSA adapter is written as peft converts one
    (`path_initial_model_for_weight_conversion`): the update relative to the original W, s·B·A − s·B₀A₀, as a LoRA
    of rank 2r with A' = [A; A₀], B' = [B, −B₀] and α' keeping the scaling, which loads onto the unmodified base model."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state, targets, head, conv1d = {}, [], set(), False
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            conv1d |= is_conv1d(module.base_layer)   # GPT-2's Conv1D stores its weight in×out: peft's fan_in_fan_out
            if module.slices != [(0, module.out_features)]:
                raise ValueError(f"{name}: a sliced fused projection cannot be expressed as a peft LoRA adapter")
            targets.append(name)
            state.update(_peft_tensors(f"base_model.model.{name}", module))
    for name, p in model.named_parameters():
        if info.is_head(name):
            state[f"base_model.model.{name}"] = p.detach().cpu().contiguous()
            head.add(next(h for h in info.head if ("." + h + ".") in ("." + name)))
    if cfg.bias != "none":
        raise ValueError("export to peft supports bias='none' only")
    doubled = cfg.init == "pissa"   # rank 2r; α' = 2α (α/r kept) or √2·α (α/√r kept)
    alpha = cfg.alpha * ((2 ** 0.5 if cfg.scaling == "rslora" else 2) if doubled else 1)
    config = {"peft_type": "LORA", "r": cfg.r * (2 if doubled else 1), "lora_alpha": alpha,
              "lora_dropout": cfg.dropout, "target_modules": sorted(targets), "bias": "none",
              "modules_to_save": sorted(head) or None, "init_lora_weights": True, "fan_in_fan_out": conv1d,
              "use_rslora": cfg.scaling == "rslora", "use_dora": cfg.dora, "task_type": task_type,
              "inference_mode": True, "base_model_name_or_path": base_model}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, str(folder / "adapter_model.safetensors"))
    return folder


def _peft_tensors(prefix: str, module: LoraLayer) -> dict:
    """One layer's tensors under peft's names; PiSSA's as the rank-2r LoRA relative to the original weight."""
    a, b = module.lora_A.detach(), module.lora_B.detach()
    if hasattr(module, "pissa_A0"):
        a, b = torch.cat([a, module.pissa_A0]), torch.cat([b, -module.pissa_B0], dim=1)
    out = {f"{prefix}.lora_A.weight": a, f"{prefix}.lora_B.weight": b}
    if hasattr(module, "lora_magnitude"):
        out[f"{prefix}.lora_magnitude_vector"] = module.lora_magnitude.detach()
    return {key: value.cpu().contiguous() for key, value in out.items()}


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
