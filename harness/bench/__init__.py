"""`harness-bench`: what adaptation costs.

    harness-bench train   --model minilm --methods full_ft,bitfit,lora,lora_peft --batch 32 --seq 128
    harness-bench latency --model minilm --grid 1x128,8x128,32x128

`train` (harness/bench/train.py): median training-step time, peak memory and trainable parameters per method, each
method in a fresh process measured the same way. `latency` (harness/bench/latency.py): forward-pass latency on a
batch × sequence grid (the paper's Table 1). Results go under reports/bench/ as JSON + Markdown.
"""
from __future__ import annotations

import sys


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("train", "latency")
    if not argv or argv[0] not in commands:
        print(f"usage: harness-bench {{{','.join(commands)}}} [options]  (harness-bench <command> --help)", file=sys.stderr)
        sys.exit(2)
    if argv[0] == "train":
        from harness.bench.train import main_train

        sys.exit(main_train(argv[1:]))
    from harness.bench.latency import main_latency

    sys.exit(main_latency(argv[1:]))


if __name__ == "__main__":
    main()
