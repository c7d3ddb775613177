"""Run records → the report's one-row-per-run frame: run.json files (folders, globs) or the runs of a W&B project.

run.json is the source of truth (one per training run). A record that is not valid JSON, or lacks the fields the
tables need, becomes a problem (path, what is wrong), listed in the report, never dropped silently.
"""
import glob
import json
import math
from pathlib import Path

import pandas as pd

from harness import results
from harness.report.facts import method_defaults, size_key, size_param, task_view
from harness.report.frames import groups, json_text, value_codes
from harness.train.config import IDENTITY_UNLESS_DEFAULT, SCORE_KEYS

REQUIRED = ("status", "model", "task", "method")
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
    ran), so the label is the budget and the real count is in params.trainable_no_head. Methods combined (`combo`):
    their members' labels joined, 'r=8 {q,v} + l_p=16', with no single size or weight types."""
    members = method_cfg.get("members")
    if isinstance(members, list) and members:
        labels = [variant_of(m)[0] for m in members if isinstance(m, dict)]
        return " + ".join(label for label in labels if label), float("nan"), ""
    key = size_key(method_cfg)
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


# Keys of the task and model configs that name or locate, never change a score; every other key does.
NOT_SCORING = {"task": ("name", "label", "report", "samples", "data_dir"), "model": ("name", "label")}


def score_settings(frame) -> list[str]:
    """The flattened config columns that change a run's score besides the method's own: the trainer keys marked
    score=True (harness/train/config.py), and every task and model key but those in NOT_SCORING."""
    trainer = [f"config.trainer.{k}" for k in SCORE_KEYS if f"config.trainer.{k}" in frame]
    others = [c for c in frame.columns for group, skip in NOT_SCORING.items()
              if c.startswith(f"config.{group}.") and c.split(".")[2] not in skip]
    return trainer + sorted(others)


def _absent(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_zero_shot(row) -> bool:
    """A run that trained nothing, the model evaluated as loaded (a runs-frame row, flattened, or a dict): its record
    says so (`zero_shot`, written by harness/runner.py), or, in records older than that mark, trainer.epochs = 0 with
    no max_steps (a run that loaded trained weights with `init_from` says false)."""
    marked = row.get("zero_shot")
    if not _absent(marked):
        return bool(marked)
    epochs, max_steps = row.get("config.trainer.epochs"), row.get("config.trainer.max_steps")
    return not _absent(epochs) and _absent(max_steps) and float(epochs) == 0


def zero_shot_mask(frame) -> pd.Series:
    """is_zero_shot for every row of a runs frame, read from its three columns (not a Series per row)."""
    rows = [dict(zip(ZERO_SHOT_KEYS, values)) for values in zip(*(_values(frame, k) for k in ZERO_SHOT_KEYS))]
    return pd.Series([is_zero_shot(row) for row in rows], index=frame.index, dtype=bool)


ZERO_SHOT_KEYS = ("zero_shot", "config.trainer.epochs", "config.trainer.max_steps")


def _values(frame, column) -> list:
    return frame[column].tolist() if column in frame else [None] * len(frame)


def add_varying_settings(frame):
    """Settings that differ between completed runs of one method (an alpha or learning-rate sweep, another pooling,
    another label smoothing) join its variant label, so that such runs form separate rows instead of being pooled as
    if they were seeds. A zero-shot run is its own row (variant `zero-shot`: what the method would train says nothing
    about it), compared only with other zero-shot runs: its epochs=0 splits no trained method's row."""
    zero = zero_shot_mask(frame)
    frame.loc[zero, "variant"] = "zero-shot"
    for key, default in IDENTITY_UNLESS_DEFAULT.items():   # a record from before the key existed ran at its default
        column = f"config.trainer.{key}"
        if column in frame:
            frame[column] = [default if pd.isna(v) else v for v in frame[column]]
    done = frame[frame["status"] == "completed"].assign(_untrained=zero)
    settings = sorted(c for c in frame.columns if c.startswith("config.method."))
    scoring = score_settings(frame)
    values, text, codes = {c: done[c].tolist() for c in settings + scoring}, json_text(), {}
    # per training-set size too: the size is its own row already, so a setting that differs only between sizes
    # (more epochs for 100 examples than for 2000) splits no row and keeps each size comparable with other methods
    for (method, model, task, size, untrained), at in groups(done, ["method", "model", "task", "train_samples",
                                                                    "_untrained"]):
        if any(pd.isna(k) for k in (method, model, task)):
            continue
        # already in the label: the size (budget or the method's size parameter) and the targets; a setting that
        # differs between tasks (a per-task learning rate) splits nothing: each task is its own column; nor does a
        # key that changes no number (results.DISPLAY_KEYS: a label, full FT's save_delta)
        shown = {"config.method." + str(k) for k in ("name", "budget", "targets", size_param(method),
                                                      *results.DISPLAY_KEYS["method"])}
        candidates = [c for c in settings if c not in shown] + scoring
        defaults = method_defaults(method)
        varying = [c for c in candidates if _differ(c, at, values, defaults, text, codes, done)]
        if not varying:
            continue
        rows = (frame["method"] == method) & (frame["model"] == model) & (frame["task"] == task) \
            & (frame["train_samples"] == size) & (zero == untrained)
        for column in varying:
            extra = [f"{column.rsplit('.', 1)[1]}={v}" for v in _as_run(frame.loc[rows, column], defaults)]
            frame.loc[rows, "variant"] = [f"{v} {e}".strip() for v, e in zip(frame.loc[rows, "variant"], extra)]
    return frame


def _as_run(values, defaults: dict):
    """A config column as the runs ran it: an absent method setting that was added later (e.g. LoRA's `scaling`) is
    its default, which a record written before it existed ran with; anything else as it is."""
    key = values.name.rsplit(".", 1)[1]
    if not values.name.startswith("config.method.") or key not in defaults:
        return values
    return values.map(lambda v: defaults[key] if _absent(v) else v)


def _as_run_list(column: str, values: list, defaults: dict) -> list:
    """_as_run for a column's values as a list."""
    key = column.rsplit(".", 1)[1]
    if not column.startswith("config.method.") or key not in defaults:
        return values
    return [defaults[key] if _absent(v) else v for v in values]


def _differ(column, at, values, defaults, text, codes, done) -> bool:
    """Whether the runs at positions `at` of `done` ran `column` with more than one value, read as JSON text (1 and
    1.0 differ): from the column's value codes (_codes) where it has them and no absent value is read as a default,
    else value by value."""
    if column not in codes:
        codes[column] = value_codes(done[column])
    key, found = column.rsplit(".", 1)[1], codes[column]
    if found is None or (column.startswith("config.method.") and key in defaults
                         and any(_absent(values[column][i]) for i in at)):
        return len({text(v) for v in _as_run_list(column, [values[column][i] for i in at], defaults)}) > 1
    return bool(found[at].min() != found[at].max())


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
        task = task_view(record["task"], config.get("task"))
        row["variant"], row["variant_size"], row["targets"] = variant_of(method_cfg)
        row.update(source=record["_source"], run_id=record.get("run_id") or record["_source"],
                   headline=metrics.get("headline") or task["headline"],
                   flags=";".join(sorted(record.get("flags") or [])),
                   error_message=((record.get("error") or {}).get("message") or ""),
                   task_family=record.get("task_family") or task["dataset"] or record["task"],
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
