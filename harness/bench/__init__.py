"""`harness-bench`: what adaptation costs.

    harness-bench train   --model minilm --methods full_ft,bitfit,lora,lora_peft --batch 32 --seq 128
    harness-bench latency --model minilm --grid 1x128,8x128,32x128

`train` (harness/bench/train.py): median training-step time, peak memory and trainable parameters per method, each
method in a fresh process measured the same way. `latency` (harness/bench/latency.py): forward-pass latency on a
batch × sequence grid (the paper's Table 1). Results go under reports/bench/ as JSON + Markdown.
"""
from __future__ import annotations

import argparse
import sys

COMMANDS = ("train", "latency")


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    from harness.bench.latency import parser as latency_parser
    from harness.bench.train import parser as train_parser

    return {"train": train_parser(), "latency": latency_parser()}


def help_text() -> str:
    """`harness-bench --help`: what it does, then each command's own help (every option)."""
    parts = [f"usage: harness-bench {{{','.join(COMMANDS)}}} [options]   (harness-bench COMMAND --help: one command)",
             "", __doc__.strip()]
    for name, parser in command_parsers().items():
        parts += ["", f"== harness-bench {name} ==", parser.format_help().rstrip()]
    return "\n".join(parts) + "\n"


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(help_text(), end="")
        sys.exit(0)
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command"
        print(f"harness-bench: error: {given}; valid choices: {', '.join(COMMANDS)} (harness-bench --help)",
              file=sys.stderr)
        sys.exit(2)
    from harness.bench.common import BenchError

    try:
        if argv[0] == "train":
            from harness.bench.train import main_train

            sys.exit(main_train(argv[1:]))
        from harness.bench.latency import main_latency

        sys.exit(main_latency(argv[1:]))
    except BenchError as exc:   # a bad option of either command: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
