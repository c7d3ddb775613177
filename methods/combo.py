"""Methods combined, as the LoRA paper's appendix combines them (LoRA + PreEmbed, LoRA + PreLayer, Hu et al. 2022,
App. E): `method=combo method.members=[{name: lora, r: 8}, {name: prefix_embed, l_p: 16}]`.

Each member is applied in turn with its own validated config; what each trains stays trainable (a member that freezes
the model first does not undo the ones before it). Evaluation enters every member's context (LoRA's update merged:
exact, the prefix stays), the artifact is each member's in its own sub-folder, the members' step hooks all run (their
regularisers summed), and the trainable count is the sum of the members' counts. The budget knob has no single size
to pick here: it is refused (no `size_param`).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

from methods import build, register, trainable_count


@dataclass
class Config:
    members: list = field(default_factory=lambda: [{"name": "lora"}, {"name": "prefix_embed"}])

    def __post_init__(self):
        if not isinstance(self.members, list) or len(self.members) < 2:
            raise ValueError(f"members must list at least two methods, got {self.members!r}")
        names = [m.get("name") if isinstance(m, dict) else m for m in self.members]
        if "combo" in names or len(set(names)) != len(names):
            raise ValueError(f"members must be distinct methods other than combo, got {names}")
        self.members = [dict(m) if isinstance(m, dict) else {"name": m} for m in self.members]

    def built(self) -> list:
        """[(Method, its Config)] for every member, each validated as `method=<member>` would be."""
        return [build(member) for member in self.members]


def apply(model, cfg: Config, info):
    kept: set[str] = set()
    for method, member_cfg in cfg.built():
        model = method.apply(model, method.sized(member_cfg, info, model), info)
        kept |= {n for n, p in model.named_parameters() if p.requires_grad}
        for name, p in model.named_parameters():
            p.requires_grad_(name in kept)
    return model


@contextlib.contextmanager
def evaluating(model, cfg: Config):
    with contextlib.ExitStack() as stack:
        for method, member_cfg in cfg.built():
            stack.enter_context(method.evaluating(model, member_cfg))
        yield model


def save(model, cfg: Config, info, folder):
    for method, member_cfg in cfg.built():
        if method.save:
            method.save(model, member_cfg, info, folder / method.name)


def regularizer(model, cfg: Config):
    """The sum of the members' loss terms (AdaLoRA's orthogonality), None when no member has one."""
    terms = [method.regularizer(model, member_cfg) for method, member_cfg in cfg.built() if method.regularizer]
    terms = [t for t in terms if t is not None]
    return sum(terms) if terms else None


def after_step(model, cfg: Config, step: int, total_steps: int) -> None:
    for method, member_cfg in cfg.built():
        if method.after_step:
            method.after_step(model, member_cfg, step, total_steps)


def count(cfg: Config, info, model) -> int:
    """The sum of the members' trainable counts without the head (each a closed formula where the member has one)."""
    return sum(trainable_count(method, member_cfg, info, copy.deepcopy(model) if not method.count else model)
               for method, member_cfg in cfg.built())


def optimizer_groups(model, cfg: Config, lr: float, weight_decay: float):
    """The first member's own optimiser groups (a LoRA+ member: its B matrices at λ·lr, every other trainable
    parameter, the other members' included, at lr), else None: the loop's own."""
    for method, member_cfg in cfg.built():
        groups = method.param_groups(model, member_cfg, lr, weight_decay)
        if groups:
            return groups
    return None


register("combo", Config, eval_context=evaluating, save=save, count=count, regularizer=regularizer,
         after_step=after_step, optimizer_groups=optimizer_groups)(apply)
