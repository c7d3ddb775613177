"""FT^Top2 (Li & Liang 2021, the LoRA paper's §5.1 baseline): fine-tune only the last two Transformer layers (+ the task
head, which the runner always trains). `top` generalises it to the last k layers; layers come from the model yaml's
`layer_pattern` (ModelInfo.layer_of), never from hard-coded names."""
from dataclasses import dataclass

from harness.errors import ConfigError
from methods import register


@dataclass
class Config:
    top: int = 2

    def __post_init__(self):
        if not isinstance(self.top, int) or isinstance(self.top, bool) or self.top <= 0:
            raise ValueError(f"top must be > 0, got {self.top!r}")


def top_layers(cfg: Config, info) -> set[int]:
    if cfg.top > info.num_layers:
        raise ConfigError(f"method.top={cfg.top} exceeds the {info.num_layers} layers of {info.name}")
    return set(range(info.num_layers - cfg.top, info.num_layers))


@register("ft_top2", Config, size_param="top")
def apply(model, cfg: Config, info):
    layers = top_layers(cfg, info)
    for name, p in model.named_parameters():
        p.requires_grad_(info.layer_of(name) in layers)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"layer_pattern {info.layer_pattern!r} of {info.name} matches no parameter")
    return model
