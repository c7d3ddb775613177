"""Training FLOPs (harness/flops.py): the count equals a hand count, matmul by matmul, on a tiny Linear stack and a
one-layer tiny BERT, for full fine-tuning and LoRA; frozen weights cost no weight gradient, so LoRA costs (2 + f)/3
of training all its matmuls; padding is not counted; MFU needs a known GPU."""
from fractions import Fraction

import pytest
import torch
from torch import nn

from harness import flops
from methods.lora import LoraLayer
from tests.methods_util import adapt, tiny_classifier


def stack():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def stack_flops(model, x: torch.Tensor) -> int:
    return flops.count_step(model, lambda m, batch: m(batch["x"]).sum(), {"x": x}, "cpu")


def test_linear_stack_full_ft_is_6n_per_token_less_the_first_input_gradient():
    model, T = stack(), 5
    # per token: forward 2·in·out, input gradient 2·in·out (not for the first layer: x needs none), weight gradient
    # 2·in·out; biases cost no matmul
    hand = (2 * 4 * 8 + 0 + 2 * 4 * 8) + (3 * 2 * 8 * 8) + (3 * 2 * 8 * 2)
    assert hand == 608
    assert stack_flops(model, torch.randn(T, 4)) == hand * T
    n = 4 * 8 + 8 * 8 + 8 * 2                                     # N = 112 matmul weights
    assert stack_flops(model, torch.randn(T, 4, requires_grad=True)) == 6 * n * T   # Kaplan et al.'s 6N per token


def test_linear_stack_lora_pays_no_weight_gradient_for_frozen_weights():
    model, T, r = stack(), 5, 2
    model.requires_grad_(False)
    model[2] = LoraLayer(model[2], r=r, alpha=2)   # A: 8→2, B: 2→8, trainable; the rest frozen
    hand = ((2 * 4 * 8)                     # layer 1: forward only (frozen, and nothing below it trains)
            + (2 * 8 * 8)                   # layer 2's W0: forward only (its input needs no gradient either)
            + (2 * 8 * r + 2 * 8 * r)       # A: forward + weight gradient (its input x needs none)
            + (3 * 2 * r * 8)               # B: forward + input gradient (to A) + weight gradient
            + (2 * 8 * 2 + 2 * 8 * 2))      # layer 3: forward + input gradient (to B); frozen: no weight gradient
    assert hand == 416
    assert stack_flops(model, torch.randn(T, 4)) == hand * T
    # with a gradient needed at the input (a trainable layer below), the issue's (2 + f)/3 of 6N' holds exactly:
    # N' = the matmul weights, LoRA's own counted in; f = the share of them that trains
    n_all, n_lora = 4 * 8 + 8 * 8 + 8 * 2 + 2 * 8 * r, 2 * 8 * r
    f = Fraction(n_lora, n_all)
    assert stack_flops(model, torch.randn(T, 4, requires_grad=True)) == (2 + f) / 3 * 6 * n_all * T == 640 * T


def one_layer_bert(method: str | None = None, **values):
    model, info = tiny_classifier("tiny-bert", "model.config.num_hidden_layers=1")
    if method:
        model, _ = adapt(method, model, info, **values)
        info.train_head(model)
    return model


def collate(rows):
    return {k: torch.tensor([row[k] for row in rows]) for k in rows[0]}


EXAMPLE = {"input_ids": [101, 2023, 2003, 1037, 7592, 102], "token_type_ids": [0] * 6, "attention_mask": [1] * 6,
           "labels": 1}


def test_one_layer_bert_full_ft_equals_the_hand_count():
    d, i, c = 32, 64, 2                    # tiny-bert: width, FFN width, classes
    counted = flops.step_flops(one_layer_bert(), lambda m, b: m(**b).loss, collate, EXAMPLE, "cpu")
    # forward per token: Wq, Wk, Wv, Wo (2·d² each) + the FFN (2·d·i twice); per pair of tokens: QKᵀ and AV (2·d
    # each); per sequence: the pooler (2·d², on [CLS]) and the classifier (2·d·c). Everything trains (embeddings
    # too), so every matmul's backward costs two forwards: 3× in all.
    assert counted == flops.StepFlops(a=Fraction(3 * (2 * d * d + 2 * d * c)), b=Fraction(3 * (4 * 2 * d * d + 2 * 2 * d * i)),
                                      c=Fraction(3 * (2 * d + 2 * d)))
    assert counted(6) == 3 * (2 * d * d + 2 * d * c) + 6 * 3 * (8 * d * d + 4 * d * i) + 36 * 3 * 4 * d


def test_one_layer_bert_lora_equals_the_hand_count():
    d, i, c, r = 32, 64, 2, 4
    model = one_layer_bert("lora", r=r, targets=["q", "v"])
    counted = flops.step_flops(model, lambda m, b: m(**b).loss, collate, EXAMPLE, "cpu")
    per_token = (3 * 2 * d * d              # W0 of q, k, v: forward only (frozen, their input needs no gradient)
                 + 2 * (2 * d * r + 2 * d * r)   # A_q, A_v: forward + weight gradient
                 + 2 * (3 * 2 * r * d)      # B_q, B_v: forward + input gradient + weight gradient
                 + 2 * (2 * d * d)          # Wo: forward + input gradient (frozen)
                 + 2 * (2 * 2 * d * i))     # FFN up and down: forward + input gradient (frozen)
    # QKᵀ and AV forward (2·d each per pair of tokens); backward: ∂P = ∂O·Vᵀ, ∂V = Pᵀ·∂O, ∂Q = ∂S·K, and no ∂K (K
    # is frozen and its input needs no gradient)
    per_pair = 2 * d + 2 * d + 3 * 2 * d
    per_sequence = 3 * 2 * d * d + 3 * 2 * d * c   # the head trains: pooler and classifier, 3× their forward
    assert counted == flops.StepFlops(Fraction(per_sequence), Fraction(per_token), Fraction(per_pair))
    full = flops.step_flops(one_layer_bert(), lambda m, b: m(**b).loss, collate, EXAMPLE, "cpu")
    assert 0.5 < counted(64) / full(64) < 0.7   # near 2/3 at a typical length: f is small, the head is not


def test_a_padded_batch_counts_its_real_tokens_only():
    step = flops.StepFlops(Fraction(10), Fraction(3), Fraction(1, 2))
    lengths = torch.tensor([3, 5, 2])          # three rows padded to 5: 15 positions, 10 tokens
    assert step.batch(lengths) == 3 * 10 + 3 * 10 + (9 + 25 + 4) // 2
    assert step.batch(lengths) == round(step(3) + step(5) + step(2))


def test_the_fit_is_exact_and_the_probe_leaves_training_untouched():
    counts = {4: 10 + 3 * 4 + 7 * 16, 6: 10 + 3 * 6 + 7 * 36, 8: 10 + 3 * 8 + 7 * 64}
    assert flops.StepFlops.fit(counts) == flops.StepFlops(Fraction(10), Fraction(3), Fraction(7))
    model = one_layer_bert("lora", r=4, targets=["q", "v"])
    model.train()   # dropout draws from the RNG: the probe must leave it as it was, and leave no gradient
    before = torch.get_rng_state()
    flops.step_flops(model, lambda m, b: m(**b).loss, collate, EXAMPLE, "cpu")
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())


def test_probe_rows_are_unpadded_and_token_labels_cover_every_position():
    row = flops.probe_batch({"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]}, 5, collate)
    assert row["input_ids"].tolist() == [[5, 6, 7, 5, 6]] and row["attention_mask"].tolist() == [[1] * 5]
    assert row["labels"].tolist() == [[5, 6, 7, 5, 6]]


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12), ("NVIDIA H100 PCIe", "bf16", 756e12), ("NVIDIA H200", "fp16", 989.4e12),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312e12), ("NVIDIA A100-SXM4-80GB", "no", 19.5e12), ("NVIDIA L4", "bf16", 121e12),
    ("NVIDIA L40S", "bf16", 362e12), ("NVIDIA A10G", "bf16", None), ("Tesla T4", "fp16", 65e12), (None, "no", None)])
def test_peak_flops_by_device_name(name, precision, peak):
    assert flops.peak_flops(name, precision) == peak


def test_a_model_the_probe_cannot_run_is_not_counted_and_still_trains(caplog):
    assert flops.step_flops(nn.Linear(2, 2), lambda m, b: m(**b).loss, collate, EXAMPLE, "cpu") is None
    assert "training FLOPs not counted (TypeError" in caplog.text
    calls = []
    features = {"input_ids": torch.randn(4), "labels": 1}   # no token sequence: not probed, the loss never called
    assert flops.step_flops(nn.Linear(4, 2), lambda m, b: calls.append(1), collate, features, "cpu") is None
    assert calls == []


def test_a_resume_from_a_checkpoint_older_than_the_counts_records_them_as_unknown(tmp_path):
    from harness.train.checkpoint import Checkpoints
    from harness.train.state import TrainingState

    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    parts = {"model": model, "optimizer": optimizer, "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1)}
    state = TrainingState()
    state.counters.add(0.5, tokens=10, positions=16, flops=1000)
    state.counters.add_eval(32)
    checkpoints = Checkpoints(tmp_path, "run")
    state.save(checkpoints, parts, 1, 1, torch.Generator().get_state())
    saved = checkpoints.latest()
    assert TrainingState.restore(saved, parts, torch.Generator()).counters.rates(1.0, 1.0) == {
        "train_flops": 1000, "flops_per_token": 100.0, "flops_per_second": 1000.0, "padding_share": 0.375,
        "eval_examples_per_second": 32.0}
    for key in ("positions", "flops", "eval_examples"):   # as a checkpoint written before these counts existed
        del saved["counters"][key]
    restored = TrainingState.restore(saved, parts, torch.Generator()).counters
    restored.add(0.5, tokens=10, positions=16, flops=1000)
    assert restored.tokens == 20 and set(restored.rates(1.0, 1.0).values()) == {None}   # unknown, never a part
