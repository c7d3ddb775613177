"""The analysis written out: harness-analyze's own folder (README.md, each table as md / tex / csv / html, plots/*.png,
index.html), and the section harness-report adds when its runs kept LoRA adapters or full FT's ΔW."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analyze.measure import measure
from harness.analyze.plots import write_plots
from harness.analyze.runs import ADAPTER, DELTA, Run
from harness.analyze.tables import analysis_tables
from harness.errors import HarnessError
from harness.io import read_json
from harness.report.render import html_page, to_markdown
from harness.report.tables import completed_runs, frame_table

ARTIFACT = {"lora": ADAPTER, "full_ft": DELTA}


def analyse(runs: list[Run], plots_dir: Path, window=None) -> tuple[list[dict], list[str]]:
    """(tables, plot paths relative to plots_dir's parent)."""
    measures = measure(runs, window)
    return analysis_tables(measures), write_plots(measures, plots_dir, window)


def _counts(runs: list[Run], skipped) -> str:
    lora, full = sum(r.kind == "lora" for r in runs), sum(r.kind == "full_ft" for r in runs)
    return (f"{lora} LoRA runs (adapters) and {full} full fine-tuning runs (saved ΔW) analysed"
            + (f"; {len(skipped)} records left out (listed at the end)." if skipped else "."))


def write(runs: list[Run], skipped, out, formats, window=None) -> str:
    """Everything into `out`; returns README.md's text."""
    from harness.report import write_tables

    out = Path(out)
    tables, figures = analyse(runs, out / "plots", window)
    side = []
    if skipped:
        left = pd.DataFrame(skipped, columns=["record", "why left out"])
        side = [dict(frame_table(left, "Records left out", "analysis_left_out"), csv=left)]
    write_tables(tables + side, out, formats)
    blocks = ["# Analysis", _counts(runs, skipped)] + [to_markdown(t, level=2).strip() for t in tables + side]
    blocks.append("\n".join(["## Plots", ""] + [f"- [{p}]({p})" for p in figures]))
    index = "\n\n".join(blocks) + "\n"
    (out / "README.md").write_text(index, encoding="utf-8", newline="\n")
    if "html" in formats:
        page = html_page("Analysis", _counts(runs, skipped), tables + side, figures)
        (out / "index.html").write_text(page, encoding="utf-8", newline="\n")
    return index


def runs_with_artifacts(frame) -> list[Run]:
    """The completed runs of a report's frame whose folder still holds a LoRA adapter or full FT's saved ΔW."""
    found = []
    for source, method in completed_runs(frame)[["source", "method"]].itertuples(index=False):
        folder = Path(source).parent
        if method in ARTIFACT and (folder / ARTIFACT[method]).is_file():
            record = read_json(source)
            if record:
                found.append(Run(folder, record, method))
    return found


def report_section(frame, plots_dir: Path) -> tuple[list[dict], list[str]]:
    """harness-report's analysis tables and plots: none unless some run kept what the analysis reads (the committed
    reports keep only run.json, so they have none). A problem becomes the section's one table."""
    runs = runs_with_artifacts(frame) if not frame.empty else []
    if not runs:
        return [], []
    try:
        return analyse(runs, plots_dir)
    except HarnessError as exc:
        problem = pd.DataFrame([[str(exc)]], columns=["problem"])
        return [frame_table(problem, "Analysis (harness-analyze): not made", "analysis_problem")], []
