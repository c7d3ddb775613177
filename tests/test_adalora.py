"""In-house AdaLoRA: the base model at init, parity with peft's AdaLoRA (outputs, gradients, the orthogonality
regulariser, importance scores and masks over the budget schedule), closed forms (the regulariser, the cubic schedule,
the count), the exact merge, and an end-to-end run that ends at the target budget and resumes exactly."""
import json

import pytest
import torch
import torch.nn.functional as F
from peft import AdaLoraConfig, get_peft_model
from safetensors.torch import load_file

import methods
from harness.errors import ConfigError
from harness.models.info import ModelInfo
from harness.runner import run
from methods import adalora
from methods.adalora_budget import budget
from tests.conftest import compose_cfg
from tests.test_lora import ENCODER_TYPES, _meta_encoder, batch, info_for, logits, tiny

LABELS = torch.tensor([0, 1, 1])
SCHEDULE = dict(tinit=2, tfinal=3, delta_t=2)   # T = 10: no pruning to step 2, pruning 3 … 7, fixed from step 8


def ours(kind="bert", targets=("q", "v", "mlp"), **kw):
    model = tiny(kind)
    cfg = adalora.Config(**{"target_r": 2, "init_r": 4, "alpha": 8.0, "targets": list(targets), **SCHEDULE, **kw})
    adalora.inject(model, cfg, info_for(kind))
    return model, cfg


def layers_of(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, adalora.SVDLayer)}


def randomise(model, seed=3):
    """Non-zero singular values and P, Q of order-one columns (λ = 0 at init would make every parity test trivial, and
    σ = 0.02 a tiny update)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers_of(model).values():
            for part, scale in (("A", 0.3), ("E", 1.0), ("B", 0.3)):
                weight = getattr(layer, f"lora_{part}")
                weight.copy_(scale * torch.randn(weight.shape, generator=g))


def reference(kind, model, cfg, total=10):
    """peft's AdaLoRA on the same base, targets and schedule, with our P, λ, Q copied in."""
    ours_layers = layers_of(model)
    ref = get_peft_model(tiny(kind), AdaLoraConfig(
        init_r=cfg.rank, target_r=cfg.target_r, lora_alpha=cfg.alpha, target_modules=sorted(ours_layers),
        total_step=total, tinit=cfg.tinit, tfinal=cfg.tfinal, deltaT=cfg.delta_t, beta1=cfg.beta1, beta2=cfg.beta2,
        orth_reg_weight=cfg.orth_reg_weight, task_type="SEQ_CLS" if kind == "bert" else None))
    copy_into(ref, ours_layers)
    return ref.eval()


def peft_parts(ref) -> dict:
    """module name → peft's SVD layer."""
    return {n.removeprefix("base_model.model."): m for n, m in ref.named_modules() if hasattr(m, "lora_E")}


def copy_into(ref, ours_layers, grads=False):
    with torch.no_grad():
        for name, module in peft_parts(ref).items():
            for part in "AEB":
                mine, theirs = getattr(ours_layers[name], f"lora_{part}"), getattr(module, f"lora_{part}")["default"]
                theirs.copy_(mine)
                theirs.grad = mine.grad.clone() if grads else None


def test_init_equals_base_and_outputs_match_peft():
    base = logits(tiny("bert"))
    model, cfg = ours()
    assert torch.equal(logits(model), base)   # λ = 0: the adapted model starts exactly at the base model
    randomise(model)
    out = logits(model)
    assert (out - base).abs().max() > 1e-3
    assert (logits(reference("bert", model, cfg)) - out).abs().max() < 1e-5   # measured: 9.3e-8


def test_gpt2_conv1d_whole_module_matches_peft_and_slices_are_refused():
    model, cfg = ours("gpt2", targets=["attn.c_attn", "o"])
    randomise(model)
    assert (logits(reference("gpt2", model, cfg)) - logits(model)).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="adapts whole modules"):
        ours("gpt2", targets=["q", "v"])   # slices of the fused c_attn


def _loss_and_grads(model, cfg=None):
    for p in model.parameters():
        p.grad = None
    loss = F.cross_entropy(model(**batch()).logits, LABELS)
    if cfg is not None:
        loss = loss + adalora.regularizer(model, cfg)
    loss.backward()
    return loss


def test_regularizer_and_gradients_match_peft():
    model, cfg = ours()
    randomise(model)
    ref = reference("bert", model, cfg)
    task = F.cross_entropy(model(**batch()).logits, LABELS)
    reg = adalora.regularizer(model, cfg)
    peft_loss = ref(**batch(), labels=LABELS).loss          # peft adds its regulariser to the model's loss
    peft_reg = peft_loss - F.cross_entropy(ref(**batch()).logits, LABELS)
    assert abs(reg.item() - peft_reg.item()) < 1e-6   # measured: 1.2e-7 (0.5403 vs 0.5403)
    _loss_and_grads(model, cfg)
    peft_loss.backward()
    for name, module in peft_parts(ref).items():
        for part in "AEB":
            mine = getattr(layers_of(model)[name], f"lora_{part}").grad
            assert (mine - getattr(module, f"lora_{part}")["default"].grad).abs().max() < 1e-4   # measured: 9.6e-8
    assert abs(task.item() + reg.item() - peft_loss.item()) < 1e-5


def test_regularizer_closed_form():
    """Q = c·[I | 0] gives ‖QQᵀ − I‖_F = |c² − 1|·√r, P = e·[I; 0] gives |e² − 1|·√r: mean times γ."""
    layer = adalora.SVDLayer(torch.nn.Linear(6, 5), r=3, alpha=1.0)
    with torch.no_grad():
        layer.lora_A.copy_(2.0 * torch.eye(3, 6))
        layer.lora_B.copy_(0.5 * torch.eye(5, 3))
    model = torch.nn.Sequential(layer)
    cfg = adalora.Config(orth_reg_weight=0.4)
    expected = 0.4 * (abs(4 - 1) * 3 ** 0.5 + abs(0.25 - 1) * 3 ** 0.5) / 2
    assert adalora.regularizer(model, cfg).item() == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():   # orthonormal P and Q: no penalty
        layer.lora_A.copy_(torch.linalg.qr(torch.randn(6, 3))[0].T)
        layer.lora_B.copy_(torch.linalg.qr(torch.randn(5, 3))[0])
    assert adalora.regularizer(model, cfg).item() == pytest.approx(0.0, abs=1e-6)
    assert adalora.regularizer(model, adalora.Config(orth_reg_weight=0.0)) is None


def test_importance_and_masks_match_peft_over_the_schedule():
    """Ten steps with identical parameters and gradients: the smoothed sensitivity and uncertainty of every entry, the
    pruned triplets at every step, and the fixed final pattern equal peft's `update_and_allocate`."""
    model, cfg = ours()
    randomise(model)
    ref = reference("bert", model, cfg)
    ours_layers, allocator = layers_of(model), ref.base_model.rankallocator
    optimizer = torch.optim.AdamW([p for n, p in model.named_parameters() if "lora_" in n], lr=5e-3)
    pruned = []
    for step in range(1, 11):
        _loss_and_grads(model, cfg)
        optimizer.step()
        copy_into(ref, ours_layers, grads=True)      # the same parameters after the step, the same gradients
        adalora.after_step(model, cfg, step, 10)
        ref.base_model.update_and_allocate(step)
        for name, module in peft_parts(ref).items():
            layer = ours_layers[name]
            assert torch.equal(layer.lora_E, module.lora_E["default"]), (step, name)   # the same λ masked
            for part in "AEB" if step < 7 else ():   # peft drops its scores at the final allocation (T − t_f = 7)
                key = f"{name}.lora_{part}.default"
                assert torch.allclose(getattr(layer, f"ipt_{part}"), allocator.exp_avg_ipt[key], rtol=1e-6, atol=0)
                assert torch.allclose(getattr(layer, f"unc_{part}"), allocator.exp_avg_unc[key], rtol=1e-6, atol=0)
        pruned.append(sum(int((layer.lora_E == 0).sum()) for layer in ours_layers.values()))
        optimizer.zero_grad()
    pattern = ref.peft_config["default"].rank_pattern
    assert {n: layer.keep.tolist() for n, layer in ours_layers.items()} == {
        k.removesuffix(".lora_E.default"): v for k, v in pattern.items()}
    # 8 matrices (q, v and both mlp ones of 2 layers): b(0) = 4 × 8 = 32, b(T) = 2 × 8 = 16. Nothing pruned up to
    # t_i = 2; at t = 4 (δt = 2) b = ⌊16 + 16·(1 − 2/5)³⌋ = 19, at t = 6 ⌊16.128⌋ = 16, at t = 7 (final) 16, then fixed
    assert pruned[:2] == [0, 0] and pruned[3] == 32 - 19 and pruned[5:] == [16] * 5


def test_budget_schedule_matches_peft_and_the_cubic():
    """b(t) equals peft's RankAllocator.budget_schedule at every step; the allocation flag too, but at t = T − t_f,
    where peft's model forces the final allocation outside the schedule (`force_mask`) and ours says so itself."""
    for total, tinit, tfinal, delta_t in [(10, 2, 3, 2), (40, 5, 10, 3), (25, 0, 0, 1)]:
        model, cfg = ours(tinit=tinit, tfinal=tfinal, delta_t=delta_t)
        allocator = reference("bert", model, cfg, total=total).base_model.rankallocator
        for step in range(1, total + 1):
            expected, flag = allocator.budget_schedule(step)
            assert budget(step, total, 32, 16, tinit, tfinal, delta_t) == (expected, flag or step == total - tfinal)
    # hand-computed: b(0) = 24, b(T) = 8, t_i = 2, T − t_f = 12: at t = 7, 8 + 16·(1 − 5/10)³ = 10
    assert budget(7, 15, 24, 8, 2, 3, 1) == (10, True)
    assert budget(2, 15, 24, 8, 2, 3, 1) == (24, False) and budget(13, 15, 24, 8, 2, 3, 1) == (8, True)


def test_merge_equals_unmerged_and_unmerge_restores():
    model, cfg = ours()
    randomise(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    unmerged = logits(model)
    with adalora.merged(model, cfg):
        assert not layers_of(model)   # the wrappers are out: the base architecture itself
        assert (logits(model) - unmerged).abs().max() < 1e-5
    assert len(layers_of(model)) == 8
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if "base_layer" in n)


def test_bf16_autocast_forward_and_backward():
    """The CUDA path's autocast: the update is added in the output's dtype, gradients stay fp32 and finite."""
    model, _ = ours()
    randomise(model)
    full = model(**batch()).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(**batch()).logits
    assert half.dtype == torch.bfloat16 and ((half.float() - full).norm() / full.norm()).item() < 2e-2
    half.float().sum().backward()
    grads = [getattr(layer, f"lora_{part}").grad for layer in layers_of(model).values() for part in "AEB"]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_count_is_the_final_budget_and_the_knob_fits_target_r():
    """MiniLM, all six matrices of 6 layers: per layer 4·(384 + 384 + 1) + 2·(384 + 1536 + 1) = 6918 per rank."""
    info = ModelInfo("x", "bert", ENCODER_TYPES, r"\.layer\.(\d+)\.", 6, 384, ["classifier", "bert.pooler"])
    method, cfg = methods.build({"name": "adalora", "budget": 4 * 6 * 6918})
    model = _meta_encoder(384, 6, 12, 1536)
    assert adalora.count(adalora.Config(target_r=8), info, model) == 8 * 6 * 6918
    cfg = method.sized(cfg, info, model)
    assert cfg.target_r == 4 and cfg.rank == 6       # init_r: ⌈1.5 × 4⌉
    method.apply(model, cfg, info)
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    assert trainable == 6 * 6 * 6918                  # every initial triplet trains until pruned


def test_config_errors():
    for kwargs, message in [({"target_r": 0}, "target_r must be a positive integer"),
                            ({"beta1": 1.0}, "beta1 must be in"), ({"tinit": 1.5}, "a float is a fraction"),
                            ({"tinit": 0.5, "tfinal": 0.5}, "leaves no steps"), ({"delta_t": 0}, "delta_t must")]:
        with pytest.raises(ValueError, match=message):
            adalora.Config(**kwargs)
    with pytest.raises(ConfigError, match="init_r=4 is below method.target_r=8"):
        ours(target_r=8)
    model, cfg = ours(tinit=5, tfinal=5)
    with pytest.raises(ConfigError, match="leave no budgeting phase in this run's 10 optimiser steps"):
        adalora.after_step(model, cfg, 1, 10)


def test_end_to_end_run_ends_at_the_target_budget(tiny_overrides, tmp_path):
    """32 examples, batch 8, 2 epochs: 8 steps; t_i = 1, T − t_f = 2 (fractions 0.1 and 0.7 of 8, rounded)."""
    record = run(compose_cfg(*tiny_overrides, "method=adalora", "method.target_r=2"), tmp_path)
    assert record["status"] == "completed"
    # tiny-bert, d = 32, d_ff = 64, 2 layers × (q, k, v, o, mlp ×2): per rank 4·65 + 2·97 = 454 per layer
    assert record["params"]["trainable_no_head"] == 3 * 2 * 454 and record["config"]["method"]["init_r"] is None
    final = json.loads((tmp_path / "adapter" / "rank_allocation.json").read_text())
    assert final["total_rank"] == final["target_total_rank"] == 2 * 12 and final["init_r"] == 3
    singular = [t for n, t in load_file(tmp_path / "adapter" / "adapter.safetensors").items() if n.endswith("lora_E")]
    assert sum(int((t != 0).sum()) for t in singular) == 24   # the pruned λ are zero in the saved adapter


def test_registered_with_its_hooks():
    method = methods.REGISTRY["adalora"] if "adalora" in methods.names() else None
    assert method and method.regularizer is adalora.regularizer and method.after_step is adalora.after_step
    assert method.size_param == "target_r"
