"""`harness-bench`: what adaptation costs, and what the harness costs around the model.

    harness-bench train        --model minilm --methods full_ft,bitfit,lora,lora_peft --batch 32 --seq 128
    harness-bench latency      --model minilm --grid 1x128,8x128,32x128
    harness-bench overhead     model=minilm task=glue/sst2 method=lora trainer.max_train_samples=2000
    harness-bench startup      model=minilm task=glue/sst2 method=lora
    harness-bench load         --model smollm2
    harness-bench report-scale --records 10000
    harness-bench eval         --classify 'model=minilm task=glue/sst2' --generate 'model=smollm2 task=e2e'
    harness-bench gpu-check                       (`make gpu-check`; on a machine without CUDA: tiny, on CPU)

`train` (train.py): training-step time, peak allocated tensor bytes and peak RSS per method, fresh processes, rounds
in random order. `latency` (latency.py): forward-pass latency on a batch × sequence grid (the paper's Table 1).
`overhead` (overhead.py): harness-run's training throughput against a bare PyTorch loop on the same examples.
`startup` (startup.py): process start to the first training step. `load` (load.py): a GGUF model ready after its
first conversion. `report-scale` (report_scale.py): harness-report over many synthetic run records. `eval`
(evaluation.py): evaluation examples/s and decoded tokens/s. `gpu-check` (gpu_check.py): every method in bf16 on a
GPU. Each writes JSON + Markdown (the command line in both, each figure beside its target) under reports/bench/.
"""
from __future__ import annotations

import importlib
import sys

# command → (its module in harness/bench/, its main function); each module has `parser()` too
COMMANDS = {"train": ("train", "main_train"), "latency": ("latency", "main_latency"),
            "overhead": ("overhead", "main_overhead"), "startup": ("startup", "main_startup"),
            "load": ("load", "main_load"), "report-scale": ("report_scale", "main_report_scale"),
            "eval": ("evaluation", "main_eval"), "gpu-check": ("gpu_check", "main_gpu_check")}


def _module(name: str):
    return importlib.import_module(f"harness.bench.{COMMANDS[name][0]}")


def help_text() -> str:
    """`harness-bench --help`: what it does, then each command's own help (every option)."""
    parts = [f"usage: harness-bench {{{','.join(COMMANDS)}}} [options]   (harness-bench COMMAND --help: one command)",
             "", __doc__.strip()]
    for name in COMMANDS:
        parts += ["", f"== harness-bench {name} ==", _module(name).parser().format_help().rstrip()]
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
        sys.exit(getattr(_module(argv[0]), COMMANDS[argv[0]][1])(argv[1:]))
    except BenchError as exc:   # a bad option of any command: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
