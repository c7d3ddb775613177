"""Prefix methods (PreEmbed, PreLayer): what trains, the paper's parameter counts, padding invariance on encoders, tiny
GPT-2 / Llama causal LMs, learning, and end-to-end runs on the tiny BERT."""
import copy

import pytest
import torch

import methods
from harness.errors import ConfigError
from harness.models.info import ModelInfo
from harness.runner import run
from methods.prefix import layout, prefix_positions
from tests.conftest import compose_cfg
from tests.methods_util import adapt, tiny_classifier as tiny, train_steps

PREFIX = ["prefix_embed", "prefix_layer"]


def tiny_decoder(kind):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=1200, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                           bos_token_id=0, eos_token_id=0))
        return model, ModelInfo("tiny-gpt2", "gpt2", {"q": r"attn\.c_attn"}, r"\.h\.(\d+)\.", 2, 32, ["lm_head"])
    model = LlamaForCausalLM(LlamaConfig(vocab_size=1200, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    return model, ModelInfo("tiny-llama", "llama", {"q": r"self_attn\.q_proj"}, r"\.layers\.(\d+)\.", 2, 32, ["lm_head"])


def ids_and_mask(lengths, width, left=False):
    torch.manual_seed(2)
    rows = [torch.randint(1000, 1200, (n,)) for n in lengths]
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


@pytest.mark.parametrize("name,formula", [
    ("prefix_embed", lambda L, d, lp, li: d * (lp + li)),          # Hu et al. 2022, §5.1
    ("prefix_layer", lambda L, d, lp, li: L * d * (lp + li)),      # one activation per slot and layer (no key/value pair)
])
@pytest.mark.parametrize("l_p,l_i", [(5, 0), (3, 2)])
def test_parameter_count_is_the_papers_formula_and_only_the_prefix_trains(name, formula, l_p, l_i):
    model, info = tiny()
    model, cfg = adapt(name, model, info, l_p=l_p, l_i=l_i)
    trained = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert set(trained) == {"prefix.embeds" if name == "prefix_embed" else "prefix.layers"}
    assert sum(trained.values()) == formula(2, 32, l_p, l_i) == methods.REGISTRY[name].count(cfg, info, model)
    assert prefix_positions(model) == l_p + l_i


def test_layout_keeps_the_leading_token_and_the_padding_side():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    index, slots, offset = layout(mask, l_p=2, l_i=1, after=1)
    # row 0: [CLS] p p a b i _   row 1: _ [CLS] p p a b i
    assert index.tolist() == [[0, 3, 4, 6], [0, 1, 4, 5]]
    assert slots.tolist() == [[1, 2, 5], [2, 3, 6]]
    assert offset.tolist() == [0, 1]
    with pytest.raises(ValueError, match="in one run"):
        layout(torch.tensor([[1, 0, 1]]), 1, 0, 0)


@pytest.mark.parametrize("model_name", ["tiny-bert", "tiny-roberta"])
@pytest.mark.parametrize("name", PREFIX)
def test_same_sentence_padded_differently_gives_the_same_logits(name, model_name):
    model, info = tiny(model_name)
    model, _ = adapt(name, model, info, l_p=3, l_i=2)
    model.eval()
    short_ids, short_mask = ids_and_mask([5, 7], 7)
    long_ids, long_mask = ids_and_mask([5, 7], 12)
    token_types = torch.zeros_like(long_ids)
    if model_name == "tiny-bert":   # a sentence pair: the infix takes the second segment (RoBERTa has one segment)
        token_types[:, 3:] = 1
    with torch.no_grad():
        a = model(input_ids=short_ids, attention_mask=short_mask, token_type_ids=token_types[:, :7]).logits
        b = model(input_ids=long_ids, attention_mask=long_mask, token_type_ids=token_types).logits
        alone = model(input_ids=short_ids[:1, :5], attention_mask=short_mask[:1, :5], token_type_ids=token_types[:1, :5]).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, a[:1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PREFIX)
def test_the_prefix_changes_the_output_and_a_few_steps_reduce_the_loss(name):
    base, info = tiny()
    model, _ = adapt(name, copy.deepcopy(base), info, l_p=4)
    ids, mask = ids_and_mask([6, 8, 5, 8], 8)
    labels = torch.tensor([0, 1, 0, 1])
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids, attention_mask=mask).logits,
                                  base.eval()(input_ids=ids, attention_mask=mask).logits)
    model.classifier.requires_grad_(True)
    losses = train_steps(model, {"input_ids": ids, "attention_mask": mask, "labels": labels}, lr=3e-2)
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("name", PREFIX)
def test_causal_lm_forward_loss_and_padding(name, kind):
    model, info = tiny_decoder(kind)
    model, _ = adapt(name, model, info, l_p=3, l_i=2)
    model.eval()
    ids, mask = ids_and_mask([6], 6)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=ids)
        right_ids, right_mask = ids_and_mask([6], 9)
        right = model(input_ids=right_ids, attention_mask=right_mask).logits
        left_ids, left_mask = ids_and_mask([6], 9, left=True)
        left = model(input_ids=left_ids, attention_mask=left_mask,
                     position_ids=(left_mask.cumsum(1) - 1).clamp(min=0)).logits
    # one next-token prediction per input token, as without the prefix
    assert out.logits.shape == (1, 6, 1200) and torch.isfinite(out.loss)
    torch.testing.assert_close(right[:, :5], out.logits[:, :5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left[:, 3:], out.logits, atol=1e-5, rtol=1e-5)
    # the model's own loss (slots and the first token no targets) equals the usual shifted loss on those logits
    shifted = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:])
    torch.testing.assert_close(out.loss, shifted)


def test_causal_lm_logits_map_back_to_the_next_token_predictions():
    base, info = tiny_decoder("gpt2")
    model, _ = adapt("prefix_embed", copy.deepcopy(base), info, l_p=2, l_i=2)
    ids, mask = ids_and_mask([5], 5)
    slots = model.prefix.embeds.detach()
    by_hand = torch.cat([slots[None, :2], base.get_input_embeddings()(ids), slots[None, 2:]], 1)   # p p t0..t4 i i
    with torch.no_grad():
        aligned = model.eval()(input_ids=ids, attention_mask=mask).logits
        full = base.eval()(inputs_embeds=by_hand).logits
    torch.testing.assert_close(aligned[0, :4], full[0, 2:6])   # t0..t3 predict t1..t4
    torch.testing.assert_close(aligned[0, 4], full[0, 8])      # after the infix, where generation goes on


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_lm_prefix_layer_trains(kind):
    model, info = tiny_decoder(kind)
    model, _ = adapt("prefix_layer", model, info, l_p=4)
    ids, mask = ids_and_mask([8, 8], 8)
    losses = train_steps(model, {"input_ids": ids, "attention_mask": mask, "labels": ids}, lr=3e-2, steps=6)
    assert losses[-1] < losses[0]


def test_too_long_inputs_are_a_clear_error_and_a_cached_step_equals_the_uncached_one():
    model, info = tiny()   # 128 positions
    model, _ = adapt("prefix_embed", model, info, l_p=8)
    with pytest.raises(ValueError, match="125 tokens \\+ 8 prefix positions exceed the model's 128 positions"):
        model(input_ids=torch.ones(1, 125, dtype=torch.long))
    decoder, dinfo = tiny_decoder("gpt2")
    decoder, _ = adapt("prefix_embed", decoder, dinfo, l_p=2)
    decoder.eval()
    ids = torch.tensor([[1001, 1002, 1003, 1004]])
    past = decoder(input_ids=ids[:, :3], use_cache=True).past_key_values
    step = decoder(input_ids=ids[:, 3:], past_key_values=past, attention_mask=torch.ones(1, 4, dtype=torch.long))
    whole = decoder(input_ids=ids)
    torch.testing.assert_close(step.logits[:, -1], whole.logits[:, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("values,message", [
    ({"l_p": -1}, "l_p must be an integer ≥ 0, got -1"),
    ({"l_p": 0, "l_i": 0}, "l_p \\+ l_i must be > 0, got l_p=0, l_i=0"),
])
def test_bad_values_name_the_value(values, message):
    with pytest.raises(ConfigError, match=message):
        methods.build({"name": "prefix_embed", **values})


@pytest.mark.parametrize("name", PREFIX)
def test_runs_end_to_end_and_records_the_count(name, tiny_overrides, tmp_path):
    record = run(compose_cfg(*tiny_overrides, f"method={name}", "method.l_p=4", "method.l_i=1"), tmp_path)
    assert record["status"] == "completed" and record["method"] == name
    assert record["params"]["trainable_no_head"] == (2 if name == "prefix_layer" else 1) * 32 * 5


def test_prefix_layer_survives_gradient_checkpointing():
    model, info = tiny_decoder("llama")
    model, _ = adapt("prefix_layer", model, info, l_p=3)
    model.activation_checkpointing_enable()
    model.train()
    ids, mask = ids_and_mask([6, 4], 6)
    model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    assert model.prefix.layers.grad is not None and model.prefix.layers.grad.abs().sum() > 0


@pytest.mark.parametrize("name", PREFIX)
def test_generate_without_a_cache_continues_after_the_prefix(name):
    model, info = tiny_decoder("llama")
    model, _ = adapt(name, model, info, l_p=3)
    ids, mask = ids_and_mask([5], 5)
    model.eval()
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=mask).logits[0, -1].argmax()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False, use_cache=False,
                             pad_token_id=0)
    assert out.shape == (1, 8) and out[0, 5] == first
