"""harness-analyze: why a low-rank update suffices, measured on the runs' own matrices (Hu et al. 2022, §7).

Usage:
    harness-analyze multirun/lora_rank_cpu --out reports/lora_analysis            # folders are searched for run.json
    harness-analyze RUN_A RUN_B --out analysis/pair --window 8,64                 # two run folders
    harness-analyze multirun/x --where method=lora --where 'config.method.r=[8,64]' --out OUT

LoRA runs (their `adapter/`): the normalised subspace similarity φ(A₁, A₂, i, j) between the A matrices of two runs
whose configurations differ only in the rank (at one seed: Figure 3) or the seed (at one rank: Figure 4), per layer
and weight type, as tables and heat maps; and the paper's Table 7: ‖ΔW‖_F, W projected onto ΔW's top-r directions,
onto its own and onto random ones, and the amplification factor. Full fine-tuning runs made with
`method.save_delta=true` (their ΔW = W_ft − W₀): singular value spectra, effective rank and the energy a rank-r
approximation keeps. The base model's W₀ is rebuilt from each run's config (harness/models/source.py).

Writes into --out: README.md (every table), each table as md / tex / csv / html (the CSV: every row, unrounded),
plots/*.png and index.html. Runs of other methods, unfinished runs and full FT runs without a saved ΔW are listed as
left out. One-line errors (exit 2): a path without run.json, a LoRA run whose adapter is missing, runs of different
base models, nothing to analyse.
"""
import argparse
import logging
import sys

from harness.errors import HarnessError


def parser() -> argparse.ArgumentParser:
    from harness.report import FORMATS   # imported here: harness.report imports this package

    p = argparse.ArgumentParser(prog="harness-analyze", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="run folders, or folders searched recursively for run.json")
    p.add_argument("--out", required=True, help="output folder, e.g. reports/lora_analysis_cpu")
    p.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="keep records whose flattened KEY equals VALUE (YAML; a list: any of its items; a record "
                        "without KEY is kept), repeatable: method=lora, seed=0, config.method.r=[8,64]")
    p.add_argument("--window", metavar="I,J", help="heat maps and their mean over i ≤ I, j ≤ J only (e.g. 8,64)")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma list of md,tex,csv,html")
    return p


def window_of(text: str | None, p: argparse.ArgumentParser):
    if text is None:
        return None
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        p.error(f"--window {text!r}: give I,J (two positive integers, e.g. 8,64)")
    if i < 1 or j < 1:
        p.error(f"--window {text!r}: I and J must be ≥ 1")
    return i, j


def analyse(args, window) -> str:
    from harness.analyze.report import write
    from harness.analyze.runs import AnalyzeError, check_one_base, find_runs, parse_where

    runs, skipped = find_runs(args.paths, parse_where(args.where))
    if not runs:
        why = "; ".join(sorted({w for _, w in skipped})) or "no record matched --where"
        raise AnalyzeError(f"nothing to analyse under {' '.join(args.paths)}: {why}")
    check_one_base(runs)
    formats = [f for f in args.formats.split(",") if f]
    write(runs, skipped, args.out, formats, window)
    return f"{len(runs)} runs analysed, {len(skipped)} left out; analysis in {args.out}/README.md"


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    window = window_of(args.window, p)
    from harness.report import FORMATS

    if set(f for f in args.formats.split(",") if f) - set(FORMATS):
        p.error(f"--formats takes {','.join(FORMATS)}")
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    try:
        print(analyse(args, window))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
