"""harness-report: the paper's tables, plots and a reproduction scorecard from the harness's run records.

Usage:
    harness-report outputs/ multirun/ --out reports/glue_table2          # folders are searched for run.json
    harness-report 'outputs/sst2/**/run.json' --out reports/sst2 --formats md,csv
    harness-report --wandb my-entity/lora-harness --out reports/wandb     # the same report from W&B runs

Writes into --out: README.md (the index: every table, the scorecard, runs not in the tables, unreadable records,
plots and the plots skipped), one file per table and format (table2_glue.md/.tex/.csv/.html, table3_e2e.*, wikisql.*),
scorecard.*, aggregate.csv (every metric of every configuration), runs.csv (one flattened row per run),
plots/*.png|pdf (--plots) and index.html (with html); when run folders kept LoRA adapters or full FT's ΔW,
harness-analyze's tables (analysis_*) and heat maps too. The same inputs give byte-identical files: rows are sorted, floats formatted, no dates.
Tables show medians ×100 with 1 decimal (NIST, CIDEr as is); their CSVs keep the scorer's scale (0.912), unrounded.

run.json is the source of truth (one per training run). A record that is not valid JSON, or lacks the fields the
tables need, is listed under "Unreadable records", never dropped silently. Exit status: 0, or 2 when nothing was found.
"""
import argparse
import gc
import json
import sys
from pathlib import Path

import pandas as pd

from harness.analyze.report import report_section
from harness.report import claims, cost, evidence, layouts, plots, protocol_check, scorecard, sections, tables
from harness.report.facts import tasks_in
from harness.results import load_runs
from harness.report.records import (find_run_files, load_records, records_to_frame, variant_of, wandb_records,
                                    wandb_run_to_record)
from harness.report.render import html_page, to_html, to_latex, to_markdown

__all__ = ["main", "write_report", "find_run_files", "load_records", "records_to_frame", "variant_of",
           "wandb_records", "wandb_run_to_record"]

FORMATS = ("md", "tex", "csv", "html")
PLOT_FORMATS = ("png", "pdf")
CLAIM_NOTES = ["Each of the paper's claims (harness/report/claims.yaml) on the runs of this report: A − B on the "
               "task's headline metric (×100; latency: % over the base model) with its 95 % interval.",
               "Evidence: examples = paired bootstrap interval and approximate-randomization p over evaluation "
               "examples, seeds paired; seeds = Student t interval and sign-flip p over per-seed differences; "
               "rounds = bootstrap over timing rounds; one seed = no interval.",
               "Verdict: supported / contradicted when the interval lies on one side of the claim's bound (test), "
               "inconclusive when it straddles it or there is none, not run when a side has no runs."]
SCORECARD_NOTES = ["ours and paper on the paper's scale (×100 except NIST, CIDEr); diff = ours − paper.",
                   "comparable: yes only when model, data size, evaluation set and budget match; why lists every "
                   "difference, including caveats that do not disqualify."]
PROTOCOL_NOTE = ["A row whose runs record their effective settings is comparable only when they follow the paper's "
                 "protocol for the cell in every setting (see the protocol check)."]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _csv(frame):
    """The frame as CSV, a list or dict in a cell as JSON. Only columns of Python objects can hold one: columns of
    numbers, booleans or text are written as they are (mapping them cell by cell changes nothing, at a cost)."""
    objects = [c for c, t in frame.dtypes.items() if not (t.kind in "fiub" or pd.api.types.is_string_dtype(t)
                                                           and t != object)]
    cells, out = frame[objects].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict, tuple))
                                    else v), frame.copy(deep=False)
    for column in objects:
        out[column] = cells[column]
    return out.to_csv(index=False, lineterminator="\n")


def write_tables(grids, out, formats):
    """Each table in each format; CSV holds the unrounded long-form numbers (median, mean, std, n …)."""
    renderers = {"md": to_markdown, "tex": to_latex, "html": to_html}
    for table in grids:
        for fmt in formats:
            text = _csv(table["csv"]) if fmt == "csv" else renderers[fmt](table)
            _write(out / f"{table['name']}.{fmt}", text)


def runs_csv(runs):
    first = ["source", "status", "model", "task", "method", "variant", "seed"]
    rest = sorted(c for c in runs.columns if c not in first)
    return _csv(runs[first + rest]) if not runs.empty else ""


def _paper_tables(agg, tasks, runs):
    """The tables the aggregate supports, each with its CSV rows, and its companion table of intervals."""
    grids, done = [], tables.completed_runs(runs) if not runs.empty else None
    for spec in tables.table_specs(agg, tasks):
        table = tables.build_table(agg, spec, done)
        table["csv"] = tables.spec_rows(agg, spec).drop(columns=["variant_size", "task_family", "headline"])
        intervals = tables.interval_table(agg, spec)
        intervals["csv"] = table["csv"]
        grids += [table, intervals]
    return grids


def _scorecard_table(agg, tasks, runs):
    """The absolute comparison with the paper's numbers: in the table only the rows where model, data, budget and (for
    runs that record their effective settings) the paper's training protocol match (comparable); every row in its CSV."""
    checked = protocol_check.by_cell(runs) if not runs.empty else {}
    card = scorecard.scorecard(agg, tasks, checked) if not agg.empty else pd.DataFrame(columns=scorecard.COLUMNS)
    comparable = card[card["comparable"] == "yes"]
    notes = SCORECARD_NOTES + (PROTOCOL_NOTE if checked else []) + [
        f"{len(comparable)} of {len(card)} rows are comparable; scorecard.csv lists all {len(card)} with why the others "
        "are not."]
    score = tables.frame_table(scorecard.display(comparable), "Paper numbers, where the setups match", "scorecard",
                               notes)
    score["csv"], score["tex_columns"] = card, "lllllrlrrlllrrrlp{6cm}"  # `why` wraps
    return score


def _claims_table(runs, benches):
    """The claim scorecard (harness/report/claims.py): the report's headline."""
    done = tables.completed_runs(runs) if not runs.empty else runs
    card = claims.scorecard(done, benches)
    notes = [claims.summary(card)] + CLAIM_NOTES + claims.legend(card)
    table = tables.frame_table(claims.display(card), "Claim scorecard", "claims", notes)
    table["csv"] = card
    return table


def write_report(runs, problems, unmatched, out, formats=FORMATS, benches=(), latency=(), analysis=True,
                 plot_formats=PLOT_FORMATS):
    """Everything into `out`; returns the index (README.md) text. `benches`: harness-bench latency JSON contents,
    `latency`: their paths (Table 1 layouts); `analysis`: harness-analyze's section, when runs kept their matrices;
    `plot_formats`: the plots' files (png, pdf; none: no plots)."""
    evidence.forget()   # predictions and comparisons are kept for one report: this one reads its files afresh
    try:
        return _write_report(runs, problems, unmatched, Path(out), formats, benches, latency, analysis, plot_formats)
    finally:
        evidence.forget()


def _write_report(runs, problems, unmatched, out, formats, benches, latency, analysis, plot_formats):
    tasks = tasks_in(runs)
    agg = tables.aggregate(runs) if not runs.empty else pd.DataFrame(columns=tables.GROUP_KEY + ["metric", "headline"])
    card = _claims_table(runs, benches)
    grids, score = [card] + _paper_tables(agg, tasks, runs), _scorecard_table(agg, tasks, runs)
    grids += layouts.layout_tables(agg, runs, tasks) + layouts.latency_tables(latency)
    grids += [table for table in [cost.cost_table(runs)] if table]   # only where records counted their FLOPs
    # only runs whose folders kept LoRA adapters or full FT's ΔW
    analysis_tables, analysis_plots = report_section(runs, out / "plots") if analysis else ([], [])
    grids += analysis_tables
    write_tables(grids + [score], out, formats)
    _write(out / "aggregate.csv", _csv(agg.drop(columns=["variant_size"], errors="ignore")))
    _write(out / "runs.csv", runs_csv(runs))
    figures, skipped = _plots(runs, out, tasks, plot_formats)
    figures += analysis_plots
    side = protocol_check.check_table(runs) + sections.side_sections(
        runs, grids, problems + [(p, "matched no file") for p in unmatched])
    index = _index(runs, grids, score, side, figures, skipped)
    _write(out / "README.md", index)
    if "html" in formats:
        _write(out / "index.html", html_page("Report", _counts(runs), grids + [score] + side, figures, skipped))
    return index


def _plots(runs, out, tasks, plot_formats):
    """(the plot files, the plots not made with why)."""
    if runs.empty or not plot_formats:
        return [], ["no runs" if runs.empty else "every plot: none asked for (--plots none)"]
    return plots.make_plots(runs, out / "plots", tasks, plot_formats)


def _counts(runs):
    counts = runs["status"].value_counts().sort_index() if not runs.empty else pd.Series(dtype=int)
    return (f"{len(runs)} run records: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
            + ". Only completed runs enter the tables.")


def _index(runs, grids, score, sections, figures, skipped):
    """README.md: counts, then every table and list as Markdown blocks (the same text as the per-table files)."""
    blocks = ["# Report", _counts(runs)]
    blocks += [to_markdown(t, level=2).strip() for t in grids + [score] + sections]
    blocks.append("\n".join(["## Plots", ""] + [f"- [{p}]({p})" for p in figures] + [f"- skipped: {s}" for s in skipped]))
    return "\n\n".join(blocks) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="harness-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="run.json files, folders (searched recursively) or globs")
    parser.add_argument("--out", required=True, help="output folder, e.g. reports/glue_table2")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read the runs of this W&B project")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma list of md,tex,csv,html")
    parser.add_argument("--plots", default=",".join(PLOT_FORMATS),
                        help="comma list of png,pdf, or none (default: png,pdf; index.html embeds the PNGs)")
    parser.add_argument("--no-analysis", action="store_true",
                        help="leave out harness-analyze's section (made when run folders kept LoRA adapters or ΔW)")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    plot_formats = [f for f in args.plots.split(",") if f not in ("", "none")]
    if set(formats) - set(FORMATS) or set(plot_formats) - set(PLOT_FORMATS) or not (args.paths or args.wandb):
        parser.error(f"give PATH... or --wandb; --formats takes {','.join(FORMATS)}; --plots takes "
                     f"{','.join(PLOT_FORMATS)} or none")
    latency = layouts.latency_files(args.paths)
    benches = [json.loads(p.read_text(encoding="utf-8")) for p in latency]
    runs = load_runs(args.paths, wandb=args.wandb, skip=latency)   # a latency JSON is no run record
    problems, unmatched = runs.attrs["problems"], runs.attrs["unmatched"]
    runs.attrs = {}   # pandas deep-copies a frame's attrs into every frame derived from it: thousands of copies
    if runs.empty and not problems and not latency:
        print(f"harness-report: no run.json found under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    gc.freeze()   # the runs' objects live to the end: the cycle collector's full passes need not walk them each time
    try:
        write_report(runs, problems, unmatched, args.out, formats, benches=benches, latency=latency,
                     analysis=not args.no_analysis, plot_formats=plot_formats)
    finally:
        gc.unfreeze()
    print(f"{len(runs)} runs, {len(problems)} unreadable; report in {Path(args.out) / 'README.md'}")
    return 0
