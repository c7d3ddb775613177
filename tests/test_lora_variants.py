"""The LoRA family in-house (methods/lora_variants.py, methods/dora.py, methods/lora_family.py): rsLoRA, PiSSA and
DoRA against peft's implementations (outputs within 1e-5, gradients within 1e-4), LoRA+'s optimiser groups against
peft's create_loraplus_optimizer, merged evaluation, the budget count, the saved adapter and the peft export."""
import copy
import json

import pytest
import torch
from peft import AutoPeftModelForSequenceClassification, LoraConfig, PeftModel, get_peft_model
from peft.optimizers import create_loraplus_optimizer
from transformers import AutoTokenizer

import methods
from harness import export
from harness.runner import run
from harness.train import loop
from methods import lora, lora_io, lora_variants
from methods.dora import DoraLayer
from tests.conftest import compose_cfg
from tests.test_export import dev_logits, run_logits
from tests.test_lora import batch, info_for, logits, tiny

OPTIONS = {"rslora": {"scaling": "rslora"}, "pissa": {"init": "pissa"}, "dora": {"dora": True},
           "dora+rslora": {"dora": True, "scaling": "rslora"}, "pissa+dora": {"init": "pissa", "dora": True}}
PEFT_OPTIONS = {"scaling": lambda v: {"use_rslora": v == "rslora"}, "dora": lambda v: {"use_dora": v},
                "init": lambda v: {"init_lora_weights": "pissa"}}


def ours(kind, targets, **options):
    model = tiny(kind)
    cfg = lora.Config(r=4, alpha=8, targets=targets, **options)
    lora.inject(model, cfg, info_for(kind))
    return model, cfg


def trained(model):
    """Move every LoRA tensor away from its start (B = 0 or PiSSA's factors would make parity partly trivial)."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in lora.lora_layers(model):
            for p in (layer.lora_A, layer.lora_B) + ((layer.lora_magnitude,) if isinstance(layer, DoraLayer) else ()):
                p.add_(torch.randn(p.shape, generator=g) * 0.3 * (p.abs().mean() + 0.3))
    return model


def peft_twin(kind, model, cfg):
    """peft's model with the same options, its LoRA tensors copied from ours (its base weights are its own: for PiSSA
    the residual peft computed from the same W)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, lora.LoraLayer)}
    extra = {}
    for key, to_peft in PEFT_OPTIONS.items():
        if getattr(cfg, key) != getattr(lora.Config(), key):
            extra.update(to_peft(getattr(cfg, key)))
    twin = get_peft_model(tiny(kind), LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, target_modules=sorted(layers), **extra))
    with torch.no_grad():
        for name, module in twin.named_modules():
            layer = layers.get(name.removeprefix("base_model.model."))
            if layer is not None and hasattr(module, "lora_A"):
                module.lora_A["default"].weight.copy_(layer.lora_A)
                module.lora_B["default"].weight.copy_(layer.lora_B)
                if cfg.dora:
                    module.lora_magnitude_vector["default"].weight.copy_(layer.lora_magnitude)
    return twin.eval()


def outputs(model) -> torch.Tensor:
    """The logits and the last hidden states (of order one, where a tiny model's logits are of order 0.01)."""
    out = model(**batch(), output_hidden_states=True)
    return torch.cat([out.logits.flatten(), out.hidden_states[-1].flatten()])


def lora_grads(model, peft_names: bool):
    """{(layer, A|B|m): gradient} after one backward pass of a fixed loss."""
    model.zero_grad()
    out = outputs(model)
    # a fixed random projection, scaled so that gradients are of order one (a sum of squares after BERT's final
    # LayerNorm would be about constant: almost no gradient, and a tolerance would test nothing)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)) / out.numel() ** 0.5
    (out * weights).sum().backward()
    out = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        if peft_names:
            for part, key in (("lora_A", "A"), ("lora_B", "B"), ("lora_magnitude_vector", "m")):
                if f".{part}." in name:
                    out[(name.removeprefix("base_model.model.").split(f".{part}.")[0], key)] = p.grad
        else:
            layer, _, leaf = name.rpartition(".")
            key = {"lora_A": "A", "lora_B": "B", "lora_magnitude": "m"}.get(leaf)
            if key:
                out[(layer, key)] = p.grad
    return out


def max_diffs(kind, targets, options):
    """(output max |Δ|, gradient max |Δ|, our output at init vs the base model, our trained output vs the base
    model, gradient max |Δ| relative to the largest gradient) for our variant and peft's."""
    with torch.no_grad():
        base = outputs(tiny(kind))
        model, cfg = ours(kind, targets, **options)
        at_init = (outputs(model) - base).abs().max().item()
        trained(model)
        twin = peft_twin(kind, model, cfg)
        mine = outputs(model)
        out, moved = (mine - outputs(twin)).abs().max().item(), (mine - base).abs().max().item()
    ours_g, peft_g = lora_grads(model, False), lora_grads(twin, True)
    assert set(ours_g) == set(peft_g) and ours_g
    scale = max(g.abs().max().item() for g in peft_g.values())
    grad = max((ours_g[k] - peft_g[k]).abs().max().item() for k in ours_g)
    return out, grad, at_init, moved, grad / scale


@pytest.mark.parametrize("variant", sorted(OPTIONS))
@pytest.mark.parametrize("kind,targets", [("bert", ["q", "v"]), ("gpt2", ["attn.c_attn", "o"]),
                                          ("llama", ["q", "v", "mlp"])])
def test_parity_with_peft(variant, kind, targets):
    out, grad, at_init, moved, relative = max_diffs(kind, targets, OPTIONS[variant])
    assert at_init < 1e-5        # every variant starts at the base model (PiSSA: W_res + s·B₀A₀ = W)
    assert moved > 0.02          # the trained update matters, so parity is not trivial
    assert out < 1e-5 and grad < 1e-4 and relative < 1e-5


def test_rslora_scaling_is_alpha_over_root_r():
    layer = lora.LoraLayer(torch.nn.Linear(8, 8), r=16, alpha=8, scaling="rslora")
    assert layer.scaling == 2.0 and lora.LoraLayer(torch.nn.Linear(8, 8), r=16, alpha=8).scaling == 0.5


def test_pissa_factors_are_the_best_rank_r_part():
    """s·B₀A₀ is W's truncated SVD (Eckart–Young: its error is the tail of the singular values) and the residual W − s·B₀A₀
    holds the rest; the factors carry √(σ/s) each."""
    w = torch.randn(12, 10, generator=torch.Generator().manual_seed(0))
    a, b = lora_variants.pissa_factors(w, 3, scaling=0.5)
    sv = torch.linalg.svdvals(w)
    torch.testing.assert_close(torch.linalg.svdvals(0.5 * b @ a)[:3], sv[:3])
    assert torch.linalg.norm(w - 0.5 * b @ a) == pytest.approx(sv[3:].norm().item(), rel=1e-5)
    torch.testing.assert_close(a.norm(dim=1) ** 2, sv[:3] / 0.5)


def test_dora_magnitude_starts_at_the_row_norm_and_the_norm_gets_no_gradient():
    model, _ = ours("bert", ["q"], dora=True)
    layer = lora.lora_layers(model)[0]
    torch.testing.assert_close(layer.lora_magnitude, layer.base_layer.weight.norm(dim=1))
    trained(model)
    x = torch.randn(5, 32)
    layer(x).sum().backward()
    # the norm is a constant (DoRA §4.3): ∂/∂m of Σ m/n ⊙ (W'x) is Σ_tokens (W'x)/n
    combined = layer.base_layer.weight + layer.scaling * layer.lora_B @ layer.lora_A
    expected = (x @ combined.T).sum(0) / combined.norm(dim=1)
    torch.testing.assert_close(layer.lora_magnitude.grad, expected.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", sorted(OPTIONS))
@pytest.mark.parametrize("kind,targets", [("bert", ["q", "v"]), ("gpt2", ["q", "v", "o"])])
def test_merged_equals_unmerged_and_unmerge_restores(variant, kind, targets):
    """GPT-2 q, v: slices of the fused c_attn (each slice its own DoRA magnitudes, its own PiSSA factors)."""
    model, cfg = ours(kind, targets, **OPTIONS[variant])
    trained(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    unmerged = logits(model)
    with lora.merged(model, cfg):
        assert not lora.lora_layers(model)
        torch.testing.assert_close(logits(model), unmerged, atol=1e-5, rtol=0)
    for name, p in model.named_parameters():
        if "base_layer" in name:
            assert torch.equal(p, before[name])


def test_budget_counts_dora_magnitudes():
    model, info = tiny("bert"), info_for("bert")
    plain = lora.count(lora.Config(r=4), info, model)
    assert plain == 2 * 2 * 4 * (32 + 32)
    assert lora.count(lora.Config(r=4, dora=True), info, model) == plain + 2 * 2 * 32   # d magnitudes per matrix
    for name in ("dora", "rslora", "pissa", "lora_plus"):
        method, cfg = methods.build({"name": name, "r": 4})
        adapted = method.apply(tiny("bert"), cfg, info)
        trainable = sum(p.numel() for n, p in adapted.named_parameters() if p.requires_grad)
        assert trainable == method.count(cfg, info, model) == plain + (128 if name == "dora" else 0)
    method, cfg = methods.build({"name": "dora", "budget": plain + 128})
    assert method.sized(cfg, info, model).r == 4


def test_loraplus_groups_match_peft_on_the_lora_matrices():
    """Per parameter, our LoRA+ learning rate equals peft's for A, B and every 2-D parameter; peft also gives every
    1-D parameter (biases, LayerNorm weights) B's rate, we keep them at A's (the paper names B only)."""
    info = info_for("bert")
    ours_model, _ = ours("bert", ["q", "v"])
    info.train_head(ours_model)
    for layer in lora.lora_layers(ours_model):
        layer.base_layer.bias.requires_grad_(True)
    twin = get_peft_model(tiny("bert"), LoraConfig(r=4, lora_alpha=8, target_modules=sorted(
        n for n, m in ours_model.named_modules() if isinstance(m, lora.LoraLayer))))
    info.train_head(twin)
    for name, p in twin.named_parameters():
        p.requires_grad_(p.requires_grad or name.endswith("base_layer.bias"))
    cfg = lora.Config(lr_ratio=16)
    groups = lora_variants.optimizer_groups(ours_model, cfg, lr=1e-3, weight_decay=0.01)
    reference = create_loraplus_optimizer(twin, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16).param_groups
    ours_lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    peft_lr = {id(p): g["lr"] for g in reference for p in g["params"]}
    ours_named = {_peft_name(n): ours_lr[id(p)] for n, p in ours_model.named_parameters() if p.requires_grad}
    peft_named = {_peft_name(n): peft_lr[id(p)] for n, p in twin.named_parameters() if p.requires_grad}
    assert set(ours_named) == set(peft_named) and len(ours_lr) == len(ours_named)
    for name, lr in ours_named.items():
        if name.endswith(".bias"):
            assert (lr, peft_named[name]) == (pytest.approx(1e-3), pytest.approx(16e-3))
        else:
            assert lr == pytest.approx(peft_named[name]) == pytest.approx(16e-3 if ".lora_B" in name else 1e-3)
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert all(decay[id(p)] == (0.01 if p.ndim > 1 else 0.0) for p in ours_model.parameters() if p.requires_grad)
    assert lora_variants.optimizer_groups(ours_model, lora.Config(), 1e-3, 0.01) is None   # λ = 1: the loop's own
    # the reference method lora_peft trains with peft's own groups
    method, cfg = methods.build({"name": "lora_peft", "r": 4, "lr_ratio": 16})
    peft_model = method.apply(tiny("bert"), cfg, info)
    rates = {id(p): g["lr"] for g in method.param_groups(peft_model, cfg, 1e-3, 0.01) for p in g["params"]}
    assert [rates[id(p)] for n, p in peft_model.named_parameters() if "lora_B" in n] == [pytest.approx(16e-3)] * 4
    assert [rates[id(p)] for n, p in peft_model.named_parameters() if "lora_A" in n] == [pytest.approx(1e-3)] * 4


def _peft_name(name: str) -> str:
    """Our or peft's parameter name, reduced to a common form (`….lora_A`, `….classifier.weight`)."""
    for cut in ("base_model.model.", ".default.weight", ".base_layer"):
        name = name.replace(cut, "")
    return name


def test_save_load_and_export_to_peft(tmp_path):
    """Every variant's adapter loads back exactly (PiSSA's residual rebuilt from the saved factors, without an SVD),
    and its peft export loads onto the unmodified base model with the same outputs (PiSSA as the rank-2r update
    relative to W, as peft converts one)."""
    info = info_for("bert")
    for variant, options in OPTIONS.items():
        model, cfg = ours("bert", ["q", "v"], **options)
        info.train_head(model)
        trained(model)
        expected = logits(model)
        folder = lora.save_adapter(model, cfg, info, tmp_path / variant / "adapter")
        loaded, _ = lora_io.load_adapter(tiny("bert"), info, folder)
        torch.testing.assert_close(logits(loaded), expected, atol=1e-6, rtol=0)
        peft_dir = lora_io.export_peft(model, cfg, info, tmp_path / variant / "peft")
        exported = PeftModel.from_pretrained(tiny("bert"), str(peft_dir)).eval()
        torch.testing.assert_close(logits(exported), expected, atol=1e-5, rtol=0)
        merged = copy.deepcopy(model)
        lora_io.merge_and_unwrap(merged)
        torch.testing.assert_close(logits(merged), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("values,message", [
    ({"name": "lora", "scaling": "x"}, "scaling must be one of standard, rslora, got 'x'"),
    ({"name": "lora", "lr_ratio": 0}, "lr_ratio must be a number > 0"),
    ({"name": "lora", "init": "svd"}, "init must be one of gaussian, kaiming, pissa, got 'svd'"),
    ({"name": "lora", "dora": "yes"}, "dora must be true or false"),
    ({"name": "dora", "dora": False}, "method dora is LoRA with dora=true; use method=lora"),
    ({"name": "rslora", "scaling": "standard"}, "method rslora is LoRA with scaling=rslora"),
    ({"name": "lora_plus", "lr_ratio": 1}, "method lora_plus is LoRA with lr_ratio=a ratio > 1"),
    ({"name": "pissa", "init": "kaiming"}, "method pissa is LoRA with init=pissa")])
def test_bad_values_are_one_line_errors(values, message):
    with pytest.raises(methods.ConfigError, match=message) as info:
        methods.build(values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["rslora", "lora_plus", "pissa", "dora"])
def test_family_method_runs_end_to_end(name, tiny_overrides, tmp_path, monkeypatch):
    """Each named variant trains through the runner, counted by the paper's formula (+ DoRA's magnitudes), keeps its
    adapter and its training-loss curve; LoRA+'s optimiser gets B at 16× A's learning rate (the loop's AdamW, spied)."""
    seen = []

    class Spy(torch.optim.AdamW):
        def __init__(self, params, **kwargs):
            seen.append([dict(g) for g in params])
            super().__init__(params, **kwargs)

    monkeypatch.setattr(loop.torch.optim, "AdamW", Spy)
    record = run(compose_cfg(*tiny_overrides, f"method={name}", "method.r=4"), tmp_path)
    assert record["status"] == "completed" and record["method"] == name
    assert record["params"]["trainable_no_head"] == 2 * 2 * 2 * 32 * 4 + (2 * 2 * 32 if name == "dora" else 0)
    assert record["metrics"]["loss_curve"]["step"][-1] == record["cost"]["steps"]
    assert (tmp_path / "adapter" / "adapter.safetensors").exists()
    lrs = {g["lr"] for g in seen[0]} if "lr" in seen[0][0] else set()
    assert lrs == ({2e-3, 32e-3} if name == "lora_plus" else set())   # the others: the loop's own groups


def test_exported_variant_run_loads_in_peft_with_the_runs_outputs(glue_dir, tmp_path, monkeypatch):
    """harness-export of a DoRA + PiSSA + rsLoRA run: AutoPeftModelForSequenceClassification loads it offline onto the
    unmodified base model and gives the run's own dev logits."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    record = run(compose_cfg("model=tiny-bert", "tracker=none", "trainer.progress=false", f"task.data_dir={glue_dir}",
                             f"trainer.cache_dir={tmp_path / 'cache'}", "trainer.batch_size=8", "trainer.epochs=1",
                             "trainer.lr=1e-2", "method=dora", "method.init=pissa", "method.scaling=rslora"),
                 tmp_path / "run")
    assert record["status"] == "completed"
    assert export.main([str(tmp_path / "run"), "--peft", str(tmp_path / "peft"), "--hub-ready"]) == 0
    assert "# tiny-bert + DoRA on sst2" in (tmp_path / "peft" / "README.md").read_text()
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["r"], config["use_dora"], config["use_rslora"]) == (16, True, True)   # PiSSA: rank 2r
    model = AutoPeftModelForSequenceClassification.from_pretrained(str(tmp_path / "peft")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "peft"))
    torch.testing.assert_close(dev_logits(model, tokenizer, glue_dir), run_logits(tmp_path / "run"), atol=1e-4,
                               rtol=0)


def test_combo_takes_its_lora_plus_members_groups():
    """In `combo`, a LoRA+ member's groups serve the whole model: its B at λ·lr, the prefix and A at lr."""
    info = info_for("bert")
    method, cfg = methods.build({"name": "combo", "members": [{"name": "lora", "r": 4, "lr_ratio": 4.0},
                                                              {"name": "prefix_embed", "l_p": 2, "l_i": 0}]})
    model = method.apply(tiny("bert"), cfg, info)
    lrs = {n: g["lr"] for g in method.param_groups(model, cfg, 1e-3, 0.0) for p in g["params"]
           for n, q in model.named_parameters() if q is p}
    assert lrs and all(lr == pytest.approx(4e-3 if n.endswith("lora_B") else 1e-3) for n, lr in lrs.items())
    assert len(lrs) == sum(p.requires_grad for p in model.parameters())
