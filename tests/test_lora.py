"""In-house LoRA: the base model at init, parity with peft (BERT, RoBERTa, GPT-2 Conv1D + fused c_attn, Llama),
merge / unmerge, the paper's parameter count, artifacts, and end-to-end runs."""
import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, RobertaConfig, RobertaForSequenceClassification)

import methods
from harness.models.info import ModelInfo
from harness.runner import run
from methods import lora, lora_io
from tests.conftest import compose_cfg

ENCODER_TYPES = {"q": r"attention\.self\.query", "k": r"attention\.self\.key", "v": r"attention\.self\.value",
                 "o": r"attention\.output\.dense", "mlp": r"(intermediate\.dense|layer\.\d+\.output\.dense)"}


def info_for(kind: str, layers: int = 2, d: int = 32) -> ModelInfo:
    if kind in ("bert", "roberta"):
        head = ["classifier", "bert.pooler"] if kind == "bert" else ["classifier"]
        return ModelInfo(kind, kind, ENCODER_TYPES, r"\.layer\.(\d+)\.", layers, d, head)
    if kind == "gpt2":
        types = {"q": r"attn\.c_attn", "k": r"attn\.c_attn", "v": r"attn\.c_attn", "o": r"attn\.c_proj",
                 "mlp": r"mlp\.(c_fc|c_proj)"}
        return ModelInfo(kind, kind, types, r"\.h\.(\d+)\.", layers, d, [], {r"attn\.c_attn": ["q", "k", "v"]})
    types = {"q": r"self_attn\.q_proj", "k": r"self_attn\.k_proj", "v": r"self_attn\.v_proj", "o": r"self_attn\.o_proj",
             "mlp": r"mlp\.(gate_proj|up_proj|down_proj)"}
    return ModelInfo(kind, kind, types, r"\.layers\.(\d+)\.", layers, d, [])


def tiny(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(num_hidden_layers=2, **common))
    elif kind == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=2, max_position_embeddings=40, **common))
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32))
    else:
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, num_key_value_heads=4, **common))
    return model.eval()


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 64, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model):
    with torch.no_grad():
        return model(**batch()).logits


def randomise(model):
    """Give every LoRA B a non-zero value (B = 0 at init would make every parity test trivial)."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in lora.lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def ours(kind, **kw):
    model = tiny(kind)
    cfg = lora.Config(r=4, alpha=8, **kw)
    lora.inject(model, cfg, info_for(kind))
    return model, cfg


def peft_from_ours(kind, model_ours, cfg, r=None, alpha=None, copy_weights=True):
    layout = {n: m for n, m in model_ours.named_modules() if isinstance(m, lora.LoraLayer)}
    peft_model = get_peft_model(tiny(kind), LoraConfig(r=r or cfg.r, lora_alpha=alpha or cfg.alpha,
                                                       target_modules=sorted(layout), init_lora_weights="gaussian"))
    if copy_weights:
        with torch.no_grad():
            for name, module in peft_model.named_modules():
                key = name.removeprefix("base_model.model.")
                if key in layout:
                    module.lora_A["default"].weight.copy_(layout[key].lora_A)
                    module.lora_B["default"].weight.copy_(layout[key].lora_B)
    return peft_model.eval()


@pytest.mark.parametrize("kind,targets", [("bert", ["q", "v"]), ("roberta", ["q", "k", "v", "o", "mlp"]),
                                          ("gpt2", ["attn.c_attn", "o", "mlp"]), ("llama", ["q", "v", "mlp"])])
def test_init_equals_base_and_parity_with_peft(kind, targets):
    base = logits(tiny(kind))
    model, cfg = ours(kind, targets=targets)
    assert torch.equal(logits(model), base)  # B = 0: the adapted model starts exactly at the base model
    randomise(model)
    out = logits(model)
    assert not torch.allclose(out, base, atol=1e-4)
    torch.testing.assert_close(logits(peft_from_ours(kind, model, cfg)), out, atol=1e-5, rtol=0)


def test_gpt2_fused_c_attn_slices_q_and_v_only():
    model, cfg = ours("gpt2", targets=["q", "v"])
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, lora.LoraLayer) and layer.slices == [(0, 32), (64, 32)]  # q and v thirds, k untouched
    randomise(model)
    # Equivalent peft adapter on the whole c_attn, rank 2r: A = [A_q; A_v], B = [[B_q, 0], [0, 0], [0, B_v]], α' = 2α
    # (so α'/r' = α/r).
    peft_model = peft_from_ours("gpt2", model, cfg, r=8, alpha=16, copy_weights=False)
    with torch.no_grad():
        for i in range(2):
            ours_layer = model.transformer.h[i].attn.c_attn
            ref = peft_model.base_model.model.transformer.h[i].attn.c_attn
            ref.lora_A["default"].weight.copy_(ours_layer.lora_A)
            b = torch.zeros(96, 8)
            b[0:32, 0:4], b[64:96, 4:8] = ours_layer.lora_B[:32], ours_layer.lora_B[32:]
            ref.lora_B["default"].weight.copy_(b)
    torch.testing.assert_close(logits(peft_model), logits(model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind,targets", [("bert", ["q", "v"]), ("gpt2", ["q", "v", "o"]), ("llama", ["q", "k", "v", "o"])])
def test_merge_equals_unmerged_and_unmerge_restores(kind, targets):
    model, cfg = ours(kind, targets=targets)
    randomise(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    unmerged = logits(model)
    wrappers = lora.lora_layers(model)
    with lora.merged(model, cfg):
        assert all(layer.merged for layer in wrappers)
        # the wrappers are out: the evaluated model has the base model's module types, nothing in between
        assert not lora.lora_layers(model)
        assert [type(m) for m in model.modules()] == [type(m) for m in tiny(kind).modules()]
        torch.testing.assert_close(logits(model), unmerged, atol=1e-5, rtol=0)
    assert lora.lora_layers(model) == wrappers and not any(layer.merged for layer in wrappers)
    for name, p in model.named_parameters():
        if "base_layer" in name:
            assert torch.equal(p, before[name])  # restored bit for bit: evaluations never drift W₀


@pytest.mark.parametrize("kind,targets", [("bert", ["q", "v"]), ("gpt2", ["q", "v"])])
def test_bf16_autocast_forward_and_backward(kind, targets):
    """The update is added into the base output in place, in the output's dtype: under bf16 autocast (the CUDA
    path) the LoRA model runs forward and backward and stays close to fp32 (bf16 keeps ~3 significant digits)."""
    model, _ = ours(kind, targets=targets)
    randomise(model)   # eval mode: no dropout, so both passes see the same network
    full = model(**batch()).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(**batch()).logits
    base = tiny(kind)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        base_half = base(**batch()).logits
    base_error = ((base_half.float() - base(**batch()).logits).norm() / base(**batch()).logits.norm()).item()
    assert half.dtype == torch.bfloat16
    assert ((half.float() - full).norm() / full.norm()).item() < 2 * base_error + 1e-3   # bf16 rounding, no more
    half.float().sum().backward()
    grads = [layer.lora_A.grad for layer in lora.lora_layers(model)] + [layer.lora_B.grad for layer in lora.lora_layers(model)]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_merge_refuses_non_finite_update():
    model, _ = ours("bert", targets=["q"])
    layer = lora.lora_layers(model)[0]
    with torch.no_grad():
        layer.lora_B[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        layer.merge()
    assert not layer.merged


def test_training_steps_match_peft():
    model, cfg = ours("bert", targets=["q", "v"])
    randomise(model)
    ref = peft_from_ours("bert", model, cfg)
    labels = torch.tensor([0, 1, 1])
    losses = []
    for m in (model, ref):
        m.eval()  # no dropout: both see exactly the same computation; gradients still flow
        for name, p in m.named_parameters():
            p.requires_grad_("lora_" in name)
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
        run_losses = []
        for _ in range(5):
            loss = torch.nn.functional.cross_entropy(m(**batch()).logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run_losses.append(loss.item())
        losses.append(run_losses)
    assert losses[0][-1] < losses[0][0]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def _meta_encoder(d, layers, heads, inter):
    with torch.device("meta"):
        return BertForSequenceClassification(BertConfig(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                                                         intermediate_size=inter, num_labels=2))


@pytest.mark.parametrize("d,layers,heads,inter", [(384, 6, 12, 1536), (768, 12, 12, 3072)])
def test_parameter_count_is_the_paper_formula(d, layers, heads, inter):
    model = _meta_encoder(d, layers, heads, inter)
    info = ModelInfo("x", "bert", ENCODER_TYPES, r"\.layer\.(\d+)\.", layers, d, ["classifier", "bert.pooler"])
    cfg = lora.Config(r=8, targets=["q", "v"])
    lora.inject(model, cfg, info)
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == 2 * (2 * layers) * d * 8 == lora.count(cfg, info, _meta_encoder(d, layers, heads, inter))
    if d == 768:
        assert trainable == 294_912  # RoBERTa-base "0.3M" in the paper's Table 2


def test_config_errors():
    for kwargs, message in [({"r": 0}, "r must be a positive integer, got 0"), ({"alpha": 0}, "alpha must be > 0"),
                            ({"dropout": 1.0}, "dropout must be in"), ({"init": "xavier"}, "init must be one of"),
                            ({"bias": "some"}, "bias must be one of")]:
        with pytest.raises(ValueError, match=message):
            lora.Config(**kwargs)
    with pytest.raises(Exception, match="match no module"):
        lora.inject(tiny("bert"), lora.Config(targets=["c_attn"]), info_for("bert"))


def test_adapter_save_load_roundtrip_and_exports(tmp_path):
    model, cfg = ours("bert", targets=["q", "v"])
    info = info_for("bert")
    for name, p in model.named_parameters():
        p.requires_grad_(p.requires_grad or info.is_head(name))
    randomise(model)
    expected = logits(model)
    folder = lora.save_adapter(model, cfg, info, tmp_path / "adapter")
    assert (folder / "adapter.safetensors").stat().st_size < 100_000
    loaded, _ = lora_io.load_adapter(tiny("bert"), info, folder)
    torch.testing.assert_close(logits(loaded), expected, atol=0, rtol=0)

    peft_dir = lora_io.export_peft(model, cfg, info, tmp_path / "peft")
    peft_model = PeftModel.from_pretrained(tiny("bert"), str(peft_dir)).eval()
    torch.testing.assert_close(logits(peft_model), expected, atol=1e-5, rtol=0)

    merged_dir = lora_io.export_merged(copy.deepcopy(model), tmp_path / "merged")
    plain = BertForSequenceClassification.from_pretrained(str(merged_dir)).eval()
    assert not any(isinstance(m, lora.LoraLayer) for m in plain.modules())
    torch.testing.assert_close(logits(plain), expected, atol=1e-5, rtol=0)


def test_load_adapter_checks_the_exact_key_set(tmp_path):
    model, cfg = ours("bert", targets=["q", "v"])
    info = info_for("bert")
    folder = lora.save_adapter(model, cfg, info, tmp_path / "a")
    meta = json.loads((folder / "adapter_config.json").read_text())
    meta["config"]["targets"] = ["q", "k", "v"]
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(KeyError, match="missing"):
        lora_io.load_adapter(tiny("bert"), info, folder)


@pytest.mark.parametrize("merge", ["true", "false"])
def test_lora_end_to_end_run(merge, tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=lora", f"method.merge_for_eval={merge}"), tmp_path)
    assert record["status"] == "completed"
    assert record["params"]["trainable_no_head"] == 2 * 2 * 2 * 32 * 8  # 2·L̂·d·r, L̂ = 2 layers × {q, v}
    assert (tmp_path / "adapter" / "adapter.safetensors").exists()


def test_lora_peft_end_to_end_same_count(tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, "method=lora_peft"), tmp_path)
    assert record["status"] == "completed" and record["params"]["trainable_no_head"] == 2 * 2 * 2 * 32 * 8


def test_registered():
    assert {"lora", "lora_peft"} <= set(methods.names())


@pytest.mark.parametrize("targets,r", [(["q"], 8), (["q", "v"], 4), (["q", "k", "v", "o"], 2)])
def test_budget_knob_spreads_one_budget_over_weight_types(targets, r):
    """The paper's Table 5 design: the budget of Wq at r=8 (2·6·384·8 = 36,864 on MiniLM) over other target sets."""
    method, cfg = methods.build({"name": "lora", "targets": targets, "budget": 36864})
    model = _meta_encoder(384, 6, 12, 1536)
    info = ModelInfo("x", "bert", ENCODER_TYPES, r"\.layer\.(\d+)\.", 6, 384, ["classifier", "bert.pooler"])
    cfg = method.sized(cfg, info, model)
    method.apply(model, cfg, info)
    assert cfg.r == r
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n) == 36864


def _first_adam_step(r, init, d=256, tokens=64, alpha=8.0, lr=1e-3):
    """|ΔW·x| after one Adam step on a fixed linear loss, relative to |x|, for one LoraLayer of rank r."""
    torch.manual_seed(0)
    layer = lora.LoraLayer(torch.nn.Linear(d, d), r=r, alpha=alpha, init=init)
    x, g = torch.randn(tokens, d), torch.randn(tokens, d)
    opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
    (layer(x) * g).sum().backward()
    opt.step()
    with torch.no_grad():
        delta = layer.scaling * (x @ layer.lora_A.T @ layer.lora_B.T)
    return (delta.norm() / x.norm()).item()


def test_gaussian_init_enlarges_small_ranks_first_step_by_one_over_r():
    """Why the rank sweep compares inits (sweeps/lora_rank_cpu.yaml, methods/lora.py): under Adam B's entries first
    move by about ±lr, so the first update of (α/r)·B·A·x is proportional to A's σ. The Gaussian σ = 1/r, against
    kaiming's r-independent σ, makes the first step of rank 1 about 16× larger relative to rank 16."""
    relative = {r: _first_adam_step(r, "gaussian") / _first_adam_step(r, "kaiming") for r in (1, 16)}
    assert 8.0 < relative[1] / relative[16] < 32.0
