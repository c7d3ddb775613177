"""A method's step hooks in the training loop (harness/train/loop.py StepHooks; methods/__init__.py Method):
`after_step` once per real optimiser step, numbered 1 … total_steps, with the gradients still there; the regulariser
back-propagated but not in the logged loss; and the runner binding them to the method's config (combo: every member's)."""
import pytest
import torch
from torch import nn

import methods
from harness.runner import step_hooks
from harness.tracking import NullTracker
from harness.train.config import TrainerConfig
from harness.train.loop import StepHooks, fit
from tests.methods_util import tiny_classifier


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return [{"input_ids": x[i], "labels": int(x[i, 0] > 0)} for i in range(32)]


def _fit(model, hooks, grad_accum=1, lr=0.1):
    tcfg = TrainerConfig(lr=lr, epochs=2, batch_size=4, grad_accum=grad_accum, progress=False, device="cpu",
                         warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=None)
    return fit(model, _data(), tcfg, collate=torch.utils.data.default_collate,
               evaluate=lambda m: {"accuracy": 0.5}, headline="accuracy", tracker=NullTracker(), seed=0,
               loss_fn=lambda m, b: nn.functional.cross_entropy(m(b["input_ids"]), b["labels"]), hooks=hooks)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_after_step_runs_once_per_optimiser_step_with_the_gradients(grad_accum):
    """32 examples, batch 4, 2 epochs: 16 batches, 16 / grad_accum optimiser steps."""
    seen = []

    def after_step(model, step, total):
        seen.append((step, total, model.weight.grad is not None and bool(model.weight.grad.abs().sum() > 0)))

    result = _fit(nn.Linear(4, 2), StepHooks(after_step=after_step), grad_accum)
    steps = 16 // grad_accum
    assert result.steps == steps and seen == [(i, steps, True) for i in range(1, steps + 1)]


def test_the_regulariser_is_back_propagated_but_not_logged():
    """From the same start, the first step's gradient with a penalty c·‖W‖² is the task's plus 2c·W₀ (its closed form),
    and the logged loss is the task's alone."""
    torch.manual_seed(0)
    plain, pulled = nn.Linear(4, 2), nn.Linear(4, 2)
    pulled.load_state_dict(plain.state_dict())
    start, first = plain.weight.detach().clone(), {}

    def keep_first(key):
        return lambda model, step, total: first.setdefault(key, model.weight.grad.clone())

    base = _fit(plain, StepHooks(after_step=keep_first("task")))
    penalised = _fit(pulled, StepHooks(regularizer=lambda m: 0.3 * m.weight.pow(2).sum(), after_step=keep_first("both")))
    assert torch.allclose(first["both"] - first["task"], 2 * 0.3 * start, atol=1e-6, rtol=0)
    assert penalised.losses[0] == base.losses[0]


def test_the_runner_binds_the_hooks_and_combo_runs_every_members():
    model, info = tiny_classifier("tiny-bert")
    method, cfg = methods.build({"name": "combo", "members": [{"name": "adalora", "target_r": 1, "tinit": 1,
                                                                "tfinal": 1}, {"name": "prefix_embed", "l_p": 2}]})
    model = method.apply(model, cfg, info)
    hooks = step_hooks(method, cfg)
    assert hooks.regularizer(model).item() > 0     # P, Q ~ N(0, 0.02²) are far from orthonormal
    for p in model.parameters():
        p.grad = torch.ones_like(p) if p.requires_grad else None
    for step in (1, 2, 3):
            hooks.after_step(model, step, 3)      # step 2 = T − t_f: the final allocation, one triplet per matrix
    layers = [m for m in model.modules() if type(m).__name__ == "SVDLayer"]
    assert len(layers) == 12 and sum(int(layer.keep.sum()) for layer in layers) == 12   # of 2 × 12 initial
    plain = step_hooks(*methods.build({"name": "lora"}))   # no step hooks; LoRA's groups are the loop's own (λ = 1)
    assert plain.regularizer is None and plain.after_step is None and plain.groups(model, 1e-3, 0.0) is None


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_stepping_adamw_itself_trains_as_accelerates_wrapper_does(monkeypatch, grad_accum):
    """On CPU in fp32 the step calls AdamW itself (harness/train/setup.py direct_optimizer: Accelerate's wrapper would
    only pass the call on); from the same start, the losses and the trained weights are those of a run that steps
    through the wrapper, bit for bit, with and without gradient accumulation."""
    from accelerate.optimizer import AcceleratedOptimizer

    from harness.train import setup

    seen, direct = [], setup.direct_optimizer

    def keep(accelerator, optimizer):
        seen.append(direct(accelerator, optimizer))
        return seen[-1]

    torch.manual_seed(0)
    first, second = nn.Linear(4, 2), nn.Linear(4, 2)
    second.load_state_dict(first.state_dict())
    monkeypatch.setattr(setup, "direct_optimizer", keep)
    own = _fit(first, None, grad_accum)
    monkeypatch.setattr(setup, "direct_optimizer", lambda accelerator, optimizer: optimizer)
    wrapped = _fit(second, None, grad_accum)
    assert type(seen[0]) is torch.optim.AdamW and not isinstance(seen[0], AcceleratedOptimizer)
    assert own.losses == wrapped.losses and len(own.losses) == 16
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
