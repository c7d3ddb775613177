"""Training FLOPs per method, counted on the model's real shapes, and model FLOPs utilisation (MFU) on a GPU.

What a training step costs (Kaplan et al. 2020, "Scaling laws for neural language models", §2.1 and Table 1: C ≈ 6N
per token): a matmul with an m×k weight costs 2·m·k FLOPs per token forward (a multiply and an add per weight),
2·m·k for the gradient of its input and 2·m·k for the gradient of its weight; hence 6N per token for N weights when
all of them train. A frozen weight needs no weight gradient, only the input gradient that carries the loss further
down (Hu et al. 2022, §4.2: LoRA needs no gradients nor optimiser states for most parameters). With N weights in the
model's matmuls of which a fraction f trains (LoRA's A and B counted in, as matmuls of their own), a step costs
2N + 2N + 2fN = (2 + f)/3 · 6N per token: LoRA, adapters and prefixes approach 2/3 of full fine-tuning as f → 0.
Two corrections the count below makes where the formula cannot: the lowest matmuls need no input gradient when
nothing below them trains (LoRA with a frozen embedding: its first layer's Wk costs 2mk, not 4mk), and attention's
score and mix products (QKᵀ and AV: 2·2·T·d FLOPs per token and layer, T the sequence length, d the attention
width; no weights) cost as in full fine-tuning wherever a gradient passes through them (Chowdhery et al. 2022, PaLM,
App. B: 6N + 12·L·d·T per token).

How it is counted, rather than assumed: a training step (the pipeline's loss, forward and backward) runs under
torch's FlopCounterMode, which sees every matmul autograd actually executes (mm, addmm, bmm, attention), on one
unpadded sequence of each of three lengths; a step's FLOPs for a sequence of n tokens are a + b·n + c·n² (matmuls
per token, attention per pair of tokens, the head once per sequence), so three lengths fix the polynomial, and a
batch costs Σ f(nᵢ) over its rows' real lengths. Padding is left out: these are model FLOPs, the work the tokens
need (PaLM's definition of MFU), not what a padded batch makes the hardware do; a prefix method's extra positions
are counted, as the model processes them. Attention is counted over the full T×T square (no causal halving).
Elementwise work (normalisation, activations, softmax, the optimiser) is not counted, as in both papers.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction

import torch

log = logging.getLogger(__name__)
PROBE_LENGTHS = (4, 6, 8)   # ≤ trainer.max_seq_len's lowest allowed value (8): room for a prefix is checked at start-up

# Peak dense FLOPs (no structured sparsity) in TFLOPS by device name: (bf16/fp16 tensor cores, fp32), from NVIDIA's
# data sheets. First match wins (H100 PCIe before H100). Another device: no MFU (null), never a guess.
PEAK_TFLOPS = (("H100 PCIe", 756.0, 51.0), ("H100 NVL", 835.0, 60.0), ("H200 NVL", 835.0, 60.0),
               ("H100", 989.4, 67.0), ("H200", 989.4, 67.0), ("A100", 312.0, 19.5), ("L40S", 362.0, 91.6),
               ("L4", 121.0, 30.3), ("A10", 125.0, 31.2), ("V100", 125.0, 15.7), ("T4", 65.0, 8.1))


@dataclass(frozen=True)
class StepFlops:
    """A training step's FLOPs for one sequence of n real tokens: a + b·n + c·n²."""

    a: Fraction
    b: Fraction
    c: Fraction

    def __call__(self, n: int) -> float:
        return float(self.a + self.b * n + self.c * n * n)

    def batch(self, lengths) -> int:
        """A batch's FLOPs, from its rows' real lengths (attention-mask sums: a list of ints, or a tensor)."""
        n = lengths.to(torch.int64).tolist() if isinstance(lengths, torch.Tensor) else lengths
        return round(self.a * len(n) + self.b * sum(n) + self.c * sum(x * x for x in n))

    @classmethod
    def fit(cls, counts: dict[int, int]) -> "StepFlops":
        """The quadratic through three (length, FLOPs) points, exactly (Lagrange interpolation in fractions)."""
        (x0, y0), (x1, y1), (x2, y2) = sorted(counts.items())
        d1, d2 = Fraction(y1 - y0, x1 - x0), Fraction(y2 - y1, x2 - x1)
        c = (d2 - d1) / (x2 - x0)
        b = d1 - c * (x0 + x1)
        return cls(y0 - b * x0 - c * x0 * x0, b, c)


def probe_batch(example: dict, n: int, collate) -> dict:
    """One unpadded training row of exactly `n` tokens, from a training example: its token fields tiled or cut to n,
    per-token labels replaced by the tokens themselves (so every position carries a loss), a sequence label kept."""
    ids = list(example["input_ids"])
    width = len(ids)

    def fit(values):
        return [values[i % width] for i in range(n)]

    row = {k: fit(v) if isinstance(v, list) and len(v) == width else v for k, v in example.items()}
    if isinstance(example.get("labels"), list):
        row["labels"] = fit(ids)
    return collate([row])


def _addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """The in-place addmm_ (LoRA adds B·(A·x) into the base output with it), which FlopCounterMode leaves out."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def count_step(model, loss_fn, batch: dict, device) -> int:
    """FLOPs of one forward + backward of `loss_fn(model, batch)`, as executed. Gradients are dropped and every RNG is
    left as it was, so training goes on as if the step had never run."""
    from torch.utils.flop_counter import FlopCounterMode

    from torch.nn.attention import SDPBackend, sdpa_kernel

    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    devices = [device] if torch.device(device).type == "cuda" else []
    # attention on its math path: plain matmuls that autograd differentiates only where a gradient is needed, and
    # that the counter sees on every device (a fused CPU kernel would go uncounted)
    with torch.random.fork_rng(devices=devices), sdpa_kernel(SDPBackend.MATH), \
            FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_flops}) as counter:
        loss_fn(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def step_flops(model, loss_fn, collate, example: dict, device) -> StepFlops | None:
    """The model's training FLOPs per sequence length, as the method leaves it (which weights train, which modules
    it adds), measured on unpadded rows made from `example` (module docstring). None, with a warning, where the probe
    steps fail, or the examples are no token sequences: the record's FLOPs are then null, and training goes on."""
    ids = example.get("input_ids") if isinstance(example, dict) else None
    if not (isinstance(ids, list) and ids and all(isinstance(i, int) for i in ids)):
        log.info("training FLOPs not counted: the training examples are no token sequences (input_ids)")
        return None
    try:
        return StepFlops.fit({n: count_step(model, loss_fn, probe_batch(example, n, collate), device)
                              for n in PROBE_LENGTHS})
    except Exception as exc:  # noqa: BLE001 - accounting must never end a run
        log.warning("training FLOPs not counted (%s: %s); cost.train_flops will be null", type(exc).__name__, exc)
        return None


def peak_flops(device_name: str | None, precision: str) -> float | None:
    """The device's peak dense FLOPs per second at `precision` (bf16 / fp16 / fp32), or None (unknown device, CPU)."""
    for key, half, single in PEAK_TFLOPS:
        if device_name and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", device_name):
            return (single if precision in ("no", "fp32") else half) * 1e12
    return None


def device_name(device) -> str | None:
    """The accelerator's name (torch.cuda.get_device_name), None on CPU."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None
