"""The lists that keep a report's tables honest: every record the tables leave out and why, the flagged runs, the
missing cells and the unreadable records."""
import pandas as pd

from harness.report.frames import records
from harness.report.tables import completed_runs, frame_table


def _first_line(text):
    return str(text).strip().splitlines()[0] if text and str(text).strip() else ""


def _unscored(done):
    """Completed runs without their headline metric: a split decoded without references (E2E's released test MRs)."""
    rows = records(done, ["source", "headline", *(c for c in done.columns if c.startswith("metrics.best."))])
    return {row["source"] for row in rows if pd.isna(row.get(f"metrics.best.{row['headline']}"))}


def not_in_tables(runs):
    """Every record the tables leave out, with why: failed / diverged / running / unknown status, a completed record
    superseded by a later completed run of the same config (same run_id), or one with no score to show."""
    done = completed_runs(runs)
    unscored = _unscored(done)
    out = runs[~runs["source"].isin(set(done["source"]) - unscored)].copy()
    out["status"] = [s if s != "completed" else "completed, no score (its run.json says why)" if p in unscored
                     else "completed, repeat of a later run" for s, p in zip(out["status"], out["source"])]
    out["error"] = [_first_line(e) for e in out["error_message"]]
    cols = ["status", "model", "task", "method", "variant", "seed", "error", "source"]
    return out.sort_values(["status", "model", "task", "method", "variant", "source"])[cols]


def unplaced_runs(runs):
    """Completed runs whose record has no trainer and no method settings (an old or foreign record): the tables
    cannot tell which settings they ran with."""
    known = [c for c in runs.columns if c.startswith(("config.trainer.", "config.method.")) and c != "config.method.name"]
    done = completed_runs(runs)
    mask = done[known].isna().all(axis=1) if known else pd.Series(True, index=done.index)
    return done[mask][["model", "task", "method", "seed", "source"]]


def side_sections(runs, grids, problems):
    """The lists that keep the tables honest: runs left out and why, flagged runs, missing cells, unreadable records
    (`problems`: (path, what is wrong) pairs)."""
    sections = []
    if not runs.empty:
        left = not_in_tables(runs)
        sections.append(frame_table(left, "Runs not in the tables", "not_in_tables",
                                    [] if len(left) else ["None: every record is a completed run."]))
        flagged = completed_runs(runs)
        flagged = flagged[flagged["flags"] != ""][["model", "task", "method", "variant", "seed", "flags", "source"]]
        if len(flagged):
            sections.append(frame_table(flagged, "Flagged runs (in the tables, marked !)", "flagged"))
        unplaced = unplaced_runs(runs)
        if len(unplaced):
            sections.append(frame_table(unplaced, "Runs whose settings could not be placed", "unplaced",
                                        ["Their records hold no trainer or method config: runs with other settings "
                                         "may be pooled with them as seeds."]))
    missing = pd.DataFrame([(t["title"], m) for t in grids for m in t["missing"]], columns=["table", "missing"])
    if len(missing):
        sections.append(frame_table(missing, "Missing cells", "missing"))
    bad = pd.DataFrame(problems, columns=["path", "problem"])
    if len(bad):
        sections.append(frame_table(bad.sort_values("path"), "Unreadable records", "unreadable"))
    return sections
