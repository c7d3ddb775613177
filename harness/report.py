"""harness-report: the paper's tables, plots and a reproduction scorecard from the harness's run records.

Usage:
    harness-report outputs/ multirun/ --out reports/glue_table2          # folders are searched for run.json
    harness-report 'outputs/sst2/**/run.json' --out reports/sst2 --formats md,csv
    harness-report --wandb my-entity/lora-harness --out reports/wandb     # the same report from W&B runs

Writes into --out: README.md (the index: every table, the scorecard, runs not in the tables, unreadable records,
plots and the plots skipped), one file per table and format (table2_glue.md/.tex/.csv/.html, table3_e2e.*, wikisql.*),
scorecard.*, aggregate.csv (every metric of every configuration), runs.csv (one flattened row per run), plots/*.png|pdf
and index.html (with html). The same inputs give byte-identical files: rows are sorted, floats formatted, no dates.
Tables show medians ×100 with 1 decimal (NIST, CIDEr as is); their CSVs keep the scorer's scale (0.912), unrounded.

run.json is the source of truth (one per training run). A record that is not valid JSON, or lacks the fields the
tables need, is listed under "Unreadable records", never dropped silently. Exit status: 0, or 2 when nothing was found.
"""
import argparse
import glob
import json
import sys
from pathlib import Path

import pandas as pd

from harness import report_plots, report_scorecard, report_tables as rt, results

FORMATS = ("md", "tex", "csv", "html")
REQUIRED = ("status", "model", "task", "method")
# Trainer settings that change a run's score; a sweep over one of them must not be pooled across seeds.
TRAINER_KEYS = ("lr", "epochs", "max_steps", "batch_size", "max_seq_len", "weight_decay", "warmup_ratio")
TARGET_ORDER = ("q", "k", "v", "o", "mlp")
# W&B run states → our statuses, used only when the harness's own `status` is missing from the summary.
WANDB_STATES = {"finished": "completed", "crashed": "failed", "failed": "failed", "killed": "failed",
                "running": "running"}


def find_run_files(paths):
    """run.json files under folders, plain files, and globs ('**' recursive); also the inputs that matched nothing."""
    found, unmatched = set(), []
    for raw in paths:
        matches = sorted(glob.glob(raw, recursive=True)) if any(c in raw for c in "*?[") else [raw]
        hits = set()
        for match in map(Path, matches):
            hits.update(match.rglob("run.json") if match.is_dir() else [match] if match.is_file() else [])
        found |= hits
        if not hits:
            unmatched.append(raw)
    return sorted(found), unmatched


def load_records(files):
    """(records, problems): each record gains `_source` (its path); a problem is (path, what is wrong)."""
    records, problems = [], []
    for path in files:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problems.append((str(path), f"unreadable JSON: {err}"))
            continue
        missing = [k for k in REQUIRED if not isinstance(record, dict) or record.get(k) is None]
        if missing:
            problems.append((str(path), "not a run record: missing " + ", ".join(missing)))
            continue
        records.append(dict(record, _source=str(path)))
    return records, problems


def variant_of(method_cfg):
    """(label, size, targets) for a method config: ('r=8 {q,v}', 8.0, 'q,v'); ('', nan, '') for full_ft. With
    `budget` set the method picks its own size at run time (the config's r / l_p is then the yaml default, not what
    ran), so the label is the budget and the real count is in params.trainable_no_head."""
    key = results.size_key(method_cfg)
    parts, size = ([f"{key}={method_cfg[key]}"], _number(method_cfg[key])) if key else ([], float("nan"))
    targets = method_cfg.get("targets") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    order = sorted(map(str, targets), key=lambda t: (TARGET_ORDER.index(t) if t in TARGET_ORDER else 99, t))
    if order:
        parts.append("{" + ",".join(order) + "}")
    return " ".join(parts), size, ",".join(order)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def add_varying_settings(frame):
    """Settings that differ between completed runs of one method (an alpha or learning-rate sweep) join its variant
    label, so that such runs form separate rows instead of being pooled as if they were seeds."""
    done = frame[frame["status"] == "completed"]
    shown = {"config.method." + k for k in ("name", "budget", "targets") + results.SIZE_KEYS}
    candidates = sorted(c for c in frame.columns if c.startswith("config.method.") and c not in shown)
    candidates += [f"config.trainer.{k}" for k in TRAINER_KEYS if f"config.trainer.{k}" in frame]
    for method, group in done.groupby("method"):
        varying = [c for c in candidates if group[c].map(lambda v: json.dumps(v, default=str)).nunique() > 1]
        rows = frame["method"] == method
        for column in varying:
            extra = [f"{column.rsplit('.', 1)[1]}={v}" for v in frame.loc[rows, column]]
            frame.loc[rows, "variant"] = [f"{v} {e}".strip() for v, e in zip(frame.loc[rows, "variant"], extra)]
    return frame


def _subset(value):
    return "full" if value in (None, "") else str(value)


def records_to_frame(records):
    """One row per record, every field flattened ('config.method.r', 'metrics.best.accuracy', 'params.total'), plus
    the derived columns the tables group by: variant, variant_size, targets, train_samples, eval_samples, headline."""
    rows = []
    for record in records:
        row = results.flatten({k: v for k, v in record.items() if k != "_source"})
        config = record.get("config") or {}
        method_cfg, trainer = config.get("method") or {}, config.get("trainer") or {}
        metrics = record.get("metrics") or {}
        row["variant"], row["variant_size"], row["targets"] = variant_of(method_cfg)
        row.update(source=record["_source"], run_id=record.get("run_id") or record["_source"],
                   headline=metrics.get("headline") or rt.HEADLINES.get(record["task"], "accuracy"),
                   flags=";".join(sorted(record.get("flags") or [])),
                   error_message=((record.get("error") or {}).get("message") or ""),
                   task_family=record.get("task_family") or ("glue" if record["task"] in rt.GLUE_TASKS
                                                             else record["task"]),
                   train_samples=_subset(trainer.get("max_train_samples")),
                   eval_samples=_subset(trainer.get("max_eval_samples")))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("seed", "experiment", "output_dir", "finished_at", "params.trainable_no_head", "metrics.per_epoch"):
        if column not in frame:
            frame[column] = None
    if frame.empty:
        return frame
    frame = add_varying_settings(frame)
    return frame.sort_values(["model", "task", "method", "variant", "seed", "source"]).reset_index(drop=True)


def _plain(value):
    """W&B summary / config objects (dict-like, nested) → plain dicts and lists."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def wandb_history(run, headline):
    """metrics.per_epoch for the learning curves, from the run's logged `eval/<headline>` + `epoch` rows (one more API
    call per run); [] when the run object cannot scan its history."""
    scan = getattr(run, "scan_history", None)
    if scan is None or not headline:
        return []
    rows = scan(keys=["epoch", f"eval/{headline}"])
    return [{"epoch": row["epoch"], headline: row[f"eval/{headline}"]} for row in rows]


def wandb_run_to_record(run, project):
    """A W&B public-API run → the run.json shape. The harness logs the resolved config flattened ('method.r') and a
    summary with `status`, `best/<metric>`, `best_epoch`, `headline`, `params/<count>`, `cost/<name>` (and `error` on
    failure); a nested config (logged by other tools or older versions) reads the same."""
    config = results.unflatten({k: v for k, v in _plain(run.config).items() if not k.startswith("_")})
    summary = results.flatten(_plain(run.summary), sep="/")

    def under(prefix):
        return {k[len(prefix):]: v for k, v in sorted(summary.items()) if k.startswith(prefix)}
    section = lambda name: config.get(name) or {}  # noqa: E731 - a one-line accessor for the config's sub-trees
    status = summary.get("status") or WANDB_STATES.get(run.state, run.state)
    message = summary.get("error/message") or summary.get("error")
    name = getattr(run, "id", None) or run.name
    return {"schema_version": 1, "run_id": summary.get("run_id") or name, "status": status,
            "error": {"message": str(message), "traceback": ""} if message else None,
            "model": section("model").get("name"), "task": section("task").get("name"),
            "task_family": section("task").get("family"), "method": section("method").get("name"),
            "experiment": run.group or config.get("experiment"), "seed": config.get("seed"), "config": config,
            "params": under("params/"),
            "metrics": {"headline": summary.get("headline"), "best": under("best/"),
                        "best_epoch": summary.get("best_epoch"), "final": under("final/"),
                        "per_epoch": wandb_history(run, summary.get("headline"))},
            "flags": list(summary.get("flags") or []), "cost": under("cost/"),
            "provenance": {"wandb": {"name": run.name, "job_type": run.job_type, "tags": list(run.tags or []),
                                     "state": run.state}},
            "output_dir": f"wandb:{project}/{name}", "started_at": None, "finished_at": None,
            "_source": f"wandb:{project}/{name}"}


def wandb_records(project):
    """Every run of ENTITY/PROJECT through wandb.Api(), converted; incomplete ones become problems, as for files."""
    import wandb  # imported here: it is slow to import and only this option needs it

    records, problems = [], []
    for run in wandb.Api().runs(project):
        record = wandb_run_to_record(run, project)
        missing = [k for k in REQUIRED if record.get(k) is None]
        if missing:
            problems.append((record["_source"], "not a harness run: missing " + ", ".join(missing)))
        else:
            records.append(record)
    return records, problems


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _csv(frame):
    cells = frame.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict, tuple)) else v)
    return cells.to_csv(index=False, lineterminator="\n")


def write_tables(tables, out, formats):
    """Each table in each format; CSV holds the unrounded long-form numbers (median, mean, std, n …)."""
    renderers = {"md": rt.to_markdown, "tex": rt.to_latex, "html": rt.to_html}
    for table in tables:
        for fmt in formats:
            text = _csv(table["csv"]) if fmt == "csv" else renderers[fmt](table)
            _write(out / f"{table['name']}.{fmt}", text)


def runs_csv(runs):
    first = ["source", "status", "model", "task", "method", "variant", "seed"]
    rest = sorted(c for c in runs.columns if c not in first)
    return _csv(runs[first + rest]) if not runs.empty else ""


def write_report(runs, problems, unmatched, out, formats=FORMATS):
    """Everything into `out`; returns the index (README.md) text."""
    out = Path(out)
    agg = rt.aggregate(runs) if not runs.empty else pd.DataFrame(columns=rt.GROUP_KEY + ["metric", "headline"])
    tables = []
    for spec in rt.table_specs(agg):
        table = rt.build_table(agg, spec)
        table["csv"] = rt.spec_rows(agg, spec).drop(columns=["variant_size", "task_family", "headline"])
        tables.append(table)
    card = report_scorecard.scorecard(agg) if not agg.empty else pd.DataFrame(columns=report_scorecard.COLUMNS)
    score = rt.frame_table(report_scorecard.display(card), "Reproduction scorecard", "scorecard",
                           ["ours and paper on the paper's scale (×100 except NIST, CIDEr); diff = ours − paper.",
                            "comparable: yes only when model, data size, evaluation set and budget match; why lists "
                            "every difference, including caveats that do not disqualify."])
    score["csv"], score["tex_columns"] = card, "lllllrlrrlllrrrlp{6cm}"  # `why` wraps
    write_tables(tables + [score], out, formats)
    _write(out / "aggregate.csv", _csv(agg.drop(columns=["variant_size"], errors="ignore")))
    _write(out / "runs.csv", runs_csv(runs))
    plots, skipped = report_plots.make_plots(runs, out / "plots") if not runs.empty else ([], ["no runs"])
    sections = rt.side_sections(runs, tables, problems + [(p, "matched no file") for p in unmatched])
    index = _index(runs, tables, score, sections, plots, skipped)
    _write(out / "README.md", index)
    if "html" in formats:
        body = "".join(rt.to_html(t, level=2) for t in tables + [score] + sections)
        _write(out / "index.html", "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Report</title></head>"
                                   f"<body>\n{body}</body></html>\n")
    return index


def _index(runs, tables, score, sections, plots, skipped):
    """README.md: counts, then every table and list as Markdown blocks (the same text as the per-table files)."""
    counts = runs["status"].value_counts().sort_index() if not runs.empty else pd.Series(dtype=int)
    blocks = ["# Report", f"{len(runs)} run records: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
              + ". Only completed runs enter the tables."]
    blocks += [rt.to_markdown(t, level=2).strip() for t in tables + [score] + sections]
    blocks.append("\n".join(["## Plots", ""] + [f"- [{p}]({p})" for p in plots] + [f"- skipped: {s}" for s in skipped]))
    return "\n\n".join(blocks) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="harness-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="run.json files, folders (searched recursively) or globs")
    parser.add_argument("--out", required=True, help="output folder, e.g. reports/glue_table2")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read the runs of this W&B project")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma list of md,tex,csv,html")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    if set(formats) - set(FORMATS) or not (args.paths or args.wandb):
        parser.error(f"give PATH... or --wandb; --formats takes {','.join(FORMATS)}")
    files, unmatched = find_run_files(args.paths)
    records, problems = load_records(files)
    if args.wandb:
        more, bad = wandb_records(args.wandb)
        records, problems = records + more, problems + bad
    if not records and not problems:
        print(f"harness-report: no run.json found under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    runs = records_to_frame(records)
    write_report(runs, problems, unmatched, args.out, formats)
    print(f"{len(records)} runs, {len(problems)} unreadable; report in {Path(args.out) / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
