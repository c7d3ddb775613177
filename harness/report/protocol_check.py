"""The report's protocol check: each run's effective settings (run.json `effective`: global batch, α, epochs, lr,
warm-up, sequence length, the run it started from) against the paper's protocol for its cell (harness/protocols),
with every deviation listed. A run that asked for the protocol (+protocol=paper) and deviates outside what its
experiment varies on purpose is flagged (!). The reproduction scorecard counts a row comparable only when its runs
deviate in nothing (scorecard.py), and names the values the notes lack as unverified.

Records made before the `effective` block existed cannot be checked: a report without any such block has no protocol
section and an unchanged scorecard.
"""
import math

import pandas as pd

from harness import protocols
from harness.report.frames import records
from harness.report.tables import GROUP_KEY, completed_runs, frame_table

PREFIX = "effective."
SPEC = "config.protocol."
COLUMNS = ["model", "task", "method", "variant", "seed", "protocol", "deviations", "unverified", "flag"]


def _plain(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _has_block(runs) -> bool:
    return f"{PREFIX}global_batch" in runs.columns and runs[f"{PREFIX}global_batch"].notna().any()


def _check(run, effective_columns, spec_columns) -> dict | None:
    """protocols.check for one row of the runs frame; None without an effective block or a covering protocol."""
    if pd.isna(run.get(f"{PREFIX}global_batch")):
        return None
    effective = {c[len(PREFIX):]: _plain(run[c]) for c in effective_columns}
    spec = {c[len(SPEC):]: _plain(run[c]) for c in spec_columns}
    spec = protocols.spec_of({"protocol": spec}) if spec.get("name") else None
    return protocols.check(run["model"], run["task"], run["method"], effective, spec)


def checks(runs) -> list[tuple]:
    """(run row, its check) for every completed run that can be checked: it has an effective block and a protocol
    covers its cell (or it asked for one)."""
    if runs.empty or not _has_block(runs):
        return []
    effective = [c for c in runs.columns if c.startswith(PREFIX)]
    spec = [c for c in runs.columns if c.startswith(SPEC)]
    read = [c for c in dict.fromkeys([*COLUMNS[:5], *GROUP_KEY, *effective, *spec]) if c in runs]   # what is read
    found = [(run, _check(run, effective, spec)) for run in records(completed_runs(runs), read)]
    return [(run, check) for run, check in found if check]


def _unverified(check: dict) -> str:
    return ", ".join(f"{u['key']} {protocols.show(u['used'])}" for u in check["unverified"])


def check_table(runs) -> list[dict]:
    """The report section (a list of one table, or none when no run can be checked)."""
    found = checks(runs)
    if not found:
        return []
    rows = [{"model": run["model"], "task": run["task"], "method": run["method"], "variant": run["variant"],
             "seed": run["seed"],
             "protocol": (check["protocol"] + ("" if check["setup"] == "main" else f" ({check['setup']})")
                          if pd.notna(run.get(f"{SPEC}name")) else "–"),
             "deviations": "; ".join(map(protocols.describe, check["deviations"])) or "none",
             "unverified": _unverified(check), "flag": "!" if check["flagged"] else ""}
            for run, check in found]
    frame = pd.DataFrame(rows, columns=COLUMNS).sort_values(["model", "task", "method", "variant", "seed"])
    notes = ["Each run's effective settings (run.json `effective`) against the paper's protocol for its cell "
             "(harness/protocols/paper.yaml, which names each value's table); protocol –: the run did not ask for it "
             "and is checked against the paper's main setup.",
             "deviations: used (paper); varied: what the experiment varies on purpose (protocol.varies). unverified: "
             "values the paper has but the reference notes do not transcribe. !: the run asked for the protocol "
             "(+protocol=paper) and deviates from it (a command-line override); its record is flagged "
             "protocol_deviation."]
    return [frame_table(frame.reset_index(drop=True), "Protocol check (the paper's training settings)",
                        "protocol_check", notes)]


def by_cell(runs) -> dict:
    """Table cell (tables.GROUP_KEY values) → (reasons, caveats) for the scorecard: every deviation of its runs (a
    row is comparable only without any), the values the notes lack, and runs that could not be checked."""
    found = checks(runs)
    if not found:
        return {}
    out: dict = {}
    for run, check in found:
        reasons, caveats = out.setdefault(tuple(run[k] for k in GROUP_KEY), (set(), set()))
        reasons.update(f"protocol: {protocols.describe(d)}" for d in check["deviations"])
        if check["unverified"]:
            caveats.add(f"unverified (not in the notes): {', '.join(u['key'] for u in check['unverified'])}")
    done = completed_runs(runs)
    for key, group in done.groupby(GROUP_KEY, sort=True, dropna=False):
        unchecked = int(group[f"{PREFIX}global_batch"].isna().sum())
        if key in out and unchecked:
            out[key][0].add(f"protocol: {unchecked} run(s) without an effective block, not checked")
    return {key: (sorted(reasons), sorted(caveats)) for key, (reasons, caveats) in out.items()}

