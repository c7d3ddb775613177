"""`model.pooling=mean`: the task head reads the masked mean of the last hidden states (the pooling Sentence-
Transformers encoders such as all-MiniLM-L6-v2 were trained with) instead of [CLS]."""
import pytest
import torch

from harness.errors import ConfigError
from harness.models.classifier import MeanPooler
from tests.methods_util import adapt, tiny_classifier as tiny
from tests.test_methods_prefix import ids_and_mask


def test_mean_pooler_is_the_masked_mean_through_dense_and_tanh():
    model, _ = tiny("tiny-bert", "+model.pooling=mean")
    assert isinstance(model.bert.pooler, MeanPooler)
    ids, mask = ids_and_mask([3, 6], 6)
    model.eval()
    with torch.no_grad():
        hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = model.bert(input_ids=ids, attention_mask=mask).pooler_output
    for i, n in enumerate([3, 6]):   # by hand: mean of the first n positions, then the pooler's dense + tanh
        expected = torch.tanh(model.bert.pooler.dense(hidden[i, :n].mean(dim=0)))
        torch.testing.assert_close(pooled[i], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", [None, "lora", "prefix_embed", "prefix_layer", "adapter_h"])
def test_padding_does_not_change_the_logits(method):
    model, info = tiny("tiny-bert", "+model.pooling=mean")
    if method:
        model, _ = adapt(method, model, info)
    model.eval()
    short_ids, short_mask = ids_and_mask([5, 7], 7)
    long_ids, long_mask = ids_and_mask([5, 7], 12)
    with torch.no_grad():
        a = model(input_ids=short_ids, attention_mask=short_mask).logits
        b = model(input_ids=long_ids, attention_mask=long_mask).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cls_is_the_default_and_a_bad_pooling_is_a_clear_error():
    model, _ = tiny("tiny-bert")
    assert not isinstance(model.bert.pooler, MeanPooler)
    with pytest.raises(ConfigError, match=r"model.pooling='max' is not valid; valid choices: cls, mean"):
        tiny("tiny-bert", "+model.pooling=max")
