"""Prefix methods under cached decoding (transformers 5 hands `generate`'s cache over as `cache`): greedy and beam
search with the KV cache give the same tokens as decoding without it, on left-padded batches, on tiny GPT-2 and Llama."""
import pytest
import torch
from transformers import GenerationConfig

from tests.methods_util import adapt
from tests.test_methods_prefix import ids_and_mask, tiny_decoder


def _randomise_slots(model):
    """Give the trainable slots other values than their real-word start, so that a mistake shows."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["prefix_embed", "prefix_layer"])
@pytest.mark.parametrize("beams", [1, 3])
def test_cached_decoding_equals_uncached(kind, method, beams):
    base, info = tiny_decoder(kind)
    model, _ = adapt(method, base, info, l_p=3)
    _randomise_slots(model)
    model.eval()
    ids, mask = ids_and_mask([5, 8, 3], 8, left=True)
    settings = dict(max_new_tokens=6, do_sample=False, num_beams=beams, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        cached = model.generate(input_ids=ids, attention_mask=mask,
                                generation_config=GenerationConfig(use_cache=True, **settings))
        uncached = model.generate(input_ids=ids, attention_mask=mask,
                                  generation_config=GenerationConfig(use_cache=False, **settings))
    assert torch.equal(cached, uncached)
    assert cached.shape[1] == 8 + 6


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["prefix_embed", "prefix_layer"])
def test_an_infix_sits_between_prompt_and_target_and_learns(kind, method):
    """Training (prompt + target, labels on the target) puts the infix where decoding (the prompt alone) has it: the
    prediction of the first target token is the same in both, and the infix receives gradient from the target."""
    from harness.tasks.decoding import token_loss

    base, info = tiny_decoder(kind)
    model, _ = adapt(method, base, info, l_p=1, l_i=2)
    _randomise_slots(model)
    model.eval()   # no dropout: the two forwards must agree
    prompt, target = torch.tensor([[1001, 1002, 1003, 1004]]), torch.tensor([[1100, 1101, 1102]])
    ids = torch.cat([prompt, target], 1)
    labels = torch.cat([torch.full_like(prompt, -100), target], 1)
    trained = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).logits
    decoded = model(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits
    torch.testing.assert_close(trained[:, prompt.shape[1] - 1], decoded[:, -1], atol=1e-5, rtol=0)
    token_loss(trained, labels).backward()
    slots = model.prefix.embeds if method == "prefix_embed" else model.prefix.layers
    infix_grad = slots.grad[..., 1:, :] if method == "prefix_layer" else slots.grad[1:]
    assert infix_grad.abs().sum() > 0
