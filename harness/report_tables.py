"""Paper-style tables from the runs frame (harness/report.py): aggregation over seeds, then Markdown / LaTeX / HTML.

The paper's protocol (Table 2 caption): the median over seeds of each run's best-epoch metric. We also keep the
mean, the sample standard deviation (ddof=1, the paper's ±) and n. Only `completed` runs are aggregated; everything
else is listed by `not_in_tables`, never dropped silently. A table is a plain dict {title, header, rows, notes}; rows
are lists of cells {text, bold, std, sup}, and one renderer per format turns cells into text, so every table
(scorecard included) shares them.
"""
import html
import math

import pandas as pd

GLUE_TASKS = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")
TASK_LABELS = {"mnli": "MNLI", "sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "qqp": "QQP",
               "rte": "RTE", "stsb": "STS-B", "e2e": "E2E", "wikisql": "WikiSQL"}
# Used only when a record lacks metrics.headline (older records); the record's own field wins.
HEADLINES = {"mnli": "accuracy", "sst2": "accuracy", "mrpc": "accuracy", "cola": "matthews_corr", "qnli": "accuracy",
             "qqp": "accuracy", "rte": "accuracy", "stsb": "pearson", "e2e": "bleu", "wikisql": "logical_form_acc"}
# The paper's row order: full fine-tuning first, then the cheaper baselines, LoRA last.
METHOD_ORDER = ("full_ft", "ft_top2", "bitfit", "prefix_embed", "prefix_layer", "adapter_h", "adapter_p", "adapter_l",
                "adapter_d", "lora", "lora_peft")
# Display names as the paper prints them; "^X" becomes a superscript in every format.
METHOD_LABELS = {"full_ft": "FT", "ft_top2": "FT^Top2", "bitfit": "BitFit", "prefix_embed": "PreEmbed",
                 "prefix_layer": "PreLayer", "adapter_h": "Adpt^H", "adapter_p": "Adpt^P", "adapter_l": "Adpt^L",
                 "adapter_d": "Adpt^D", "lora": "LoRA", "lora_peft": "LoRA^peft"}
E2E_METRICS = (("BLEU", "bleu"), ("NIST", "nist"), ("METEOR", "meteor"), ("ROUGE-L", "rouge_l"), ("CIDEr", "cider"))
WIKISQL_METRICS = (("Logical form", "logical_form_acc"), ("Execution", "execution_acc"))
# One row of a table = one configuration; the task is the column.
ROW_KEY = ["task_family", "model", "method", "variant", "train_samples"]
GROUP_KEY = ROW_KEY + ["task"]


def scale_of(metric):
    """(factor, decimals) for display: NIST and CIDEr are not fractions, the paper prints them as is with 2 decimals;
    every other metric (accuracy, correlations, BLEU, METEOR, ROUGE-L) is shown ×100 with 1 decimal."""
    return (1.0, 2) if metric in ("nist", "cider") else (100.0, 1)


def fmt_params(n):
    """The paper's parameter counts: 0.3M, 22.7M, 25.7K (from 100K up in millions, as it does); a second decimal
    where one would be more than 10% off (0.35M, not 0.3M)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    if n >= 1e5:
        return f"{n / 1e6:.{1 if abs(round(n / 1e6, 1) * 1e6 - n) <= 0.1 * n else 2}f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(int(n))


def fmt_num(value, digits):
    """Fixed decimals, and never '-0.0' (a difference of -0.001 rounds to zero, not to a negative zero)."""
    return f"{round(value, digits) + 0.0:.{digits}f}"


def task_order(task):
    """Table 2's task order (MNLI … STS-B), then the other tasks alphabetically."""
    return (GLUE_TASKS.index(task) if task in GLUE_TASKS else len(GLUE_TASKS), task)


def method_order(method):
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _first_line(text):
    return str(text).strip().splitlines()[0] if text and str(text).strip() else ""


def completed_runs(runs):
    """Completed runs, one per run_id: a config re-run to completion keeps its latest record (by finished_at, path)."""
    done = runs[runs["status"] == "completed"]
    return done.sort_values(["finished_at", "source"], na_position="first").drop_duplicates("run_id", keep="last")


def not_in_tables(runs):
    """Every record the tables leave out, with why: failed / diverged / running / unknown status, or a completed
    record superseded by a later completed run of the same config (same run_id)."""
    kept = set(completed_runs(runs)["source"])
    out = runs[~runs["source"].isin(kept)].copy()
    out["status"] = [s if s != "completed" else "completed, repeat of a later run" for s in out["status"]]
    out["error"] = [_first_line(e) for e in out["error_message"]]
    cols = ["status", "model", "task", "method", "variant", "seed", "error", "output_dir"]
    return out.sort_values(["status", "model", "task", "method", "variant", "source"])[cols]


def aggregate(runs):
    """One row per (configuration, task, metric): median, mean, std (ddof=1; empty for n=1), min, max, n over seeds."""
    done = completed_runs(runs)
    metric_cols = sorted(c for c in done.columns if c.startswith("metrics.best."))
    rows = []
    for key, group in done.groupby(GROUP_KEY, sort=True, dropna=False):
        headline = group["headline"].mode().iloc[0]
        for col in metric_cols:
            values = group[col].dropna().astype(float)
            if values.empty:
                continue
            metric = col[len("metrics.best."):]
            seeds = sorted(group.loc[values.index, "seed"].tolist())
            rows.append(dict(zip(GROUP_KEY, key), metric=metric, headline=metric == headline,
                             median=values.median(), mean=values.mean(), std=values.std(ddof=1), min=values.min(),
                             max=values.max(), n=len(values), seeds=",".join(str(s) for s in seeds),
                             repeated_seeds=len(set(seeds)) < len(seeds),
                             flagged=int((group.loc[values.index, "flags"] != "").sum()),
                             params_no_head=group["params.trainable_no_head"].median(),
                             eval_samples=",".join(sorted(set(group["eval_samples"]))),
                             variant_size=group["variant_size"].iloc[0], targets=group["targets"].iloc[0]))
    columns = GROUP_KEY + ["metric", "headline", "median", "mean", "std", "min", "max", "n", "seeds", "repeated_seeds",
                           "flagged", "params_no_head", "eval_samples", "variant_size", "targets"]
    agg = pd.DataFrame(rows, columns=columns)
    return sort_configs(agg, ["task", "metric"])


def sort_configs(frame, extra=()):
    """Rows in the paper's order: model, method (FT … LoRA), size ascending, fewer adapted weights first ({q} before
    {q,v}), then `extra`."""
    frame = frame.assign(_m=frame["method"].map(method_order),
                         _n=frame["targets"].map(lambda t: len(t.split(",")) if t else 0))
    frame = frame.sort_values(["model", "_m", "variant_size", "_n", "variant", "train_samples", *extra],
                              na_position="first", kind="mergesort")
    return frame.drop(columns=["_m", "_n"]).reset_index(drop=True)


def table_specs(agg):
    """The tables the data supports: Table 2 (GLUE tasks present, paper order), Table 3 (E2E), WikiSQL."""
    specs = []
    glue = agg[agg["task_family"] == "glue"]
    if not glue.empty:
        tasks = sorted(set(glue["task"]), key=task_order)
        columns = [(TASK_LABELS.get(t, t), t, _headline_of(glue, t)) for t in tasks]
        specs.append(dict(name="table2_glue", title="Table 2: GLUE (dev)", family="glue", columns=columns, avg=True))
    for family, name, title, metrics in (("e2e", "table3_e2e", "Table 3: E2E NLG", E2E_METRICS),
                                         ("wikisql", "wikisql", "WikiSQL", WIKISQL_METRICS)):
        sub = agg[agg["task_family"] == family]
        for task in sorted(set(sub["task"])):
            present = set(sub.loc[sub["task"] == task, "metric"])
            columns = [(label, task, m) for label, m in metrics if m in present]
            if columns:
                suffix = "" if task == family else f"_{task}"
                specs.append(dict(name=name + suffix, title=title + suffix, family=family, columns=columns, avg=False))
    return specs


def _headline_of(agg, task):
    marked = agg[(agg["task"] == task) & agg["headline"]]
    return marked["metric"].mode().iloc[0] if not marked.empty else HEADLINES.get(task, "accuracy")


def spec_rows(agg, spec):
    """The aggregate rows a table shows (its CSV): this family, the (task, metric) pairs of its columns."""
    wanted = {(task, metric) for _, task, metric in spec["columns"]}
    sub = agg[agg["task_family"] == spec["family"]]
    return sub[[(t, m) in wanted for t, m in zip(sub["task"], sub["metric"])]]


def cell(text, bold=False, std=None, sup=None):
    return {"text": str(text), "bold": bold, "std": std, "sup": sup}


def method_cell(method):
    base, _, sup = METHOD_LABELS.get(method, method).partition("^")
    return cell(base, sup=sup or None)


def build_table(agg, spec):
    """The grid for one spec: one row per configuration, medians ×scale with ± std, column best in bold, Avg, notes."""
    sub = spec_rows(agg, spec)
    configs = sub.drop_duplicates(ROW_KEY)
    several_sizes = sub["train_samples"].nunique() > 1
    header = ["Model", "Method", "Size", "# Params"] + [label for label, _, _ in spec["columns"]]
    header += ["Avg"] if spec["avg"] else []
    values, rows, missing = [], [], []
    for _, conf in configs.iterrows():
        mine = sub[(sub[ROW_KEY] == conf[ROW_KEY]).all(axis=1)]
        size = [conf["variant"]] + ([f"{conf['train_samples']} train"] if several_sizes else [])
        row = [cell(conf["model"]), method_cell(conf["method"]), cell(" · ".join(p for p in size if p) or "–"),
               cell(fmt_params(mine["params_no_head"].median()))]
        row_values = []
        for label, task, metric in spec["columns"]:
            hit = mine[(mine["task"] == task) & (mine["metric"] == metric)]
            if hit.empty:
                row.append(cell("–"))
                row_values.append(None)
                missing.append(f"{conf['model']} / {conf['method']} {conf['variant']}".strip()
                               + f": no completed run for {label}")
                continue
            h = hit.iloc[0]
            factor, digits = scale_of(metric)
            std = None if pd.isna(h["std"]) else fmt_num(h["std"] * factor, digits)
            row.append(cell(fmt_num(h["median"] * factor, digits), std=std, sup="!" if h["flagged"] else None))
            row_values.append(round(h["median"] * factor, digits))
        if spec["avg"]:
            present = [v for v in row_values if v is not None]
            text = fmt_num(sum(present) / len(present), 1)
            complete = len(present) == len(row_values)
            row.append(cell(text if complete else f"{text} ({len(present)}/{len(row_values)})"))
            row_values.append(round(sum(present) / len(present), 1) if complete else None)
        values.append(row_values)
        rows.append(row)
    _bold_best(rows, values, first=4)
    return {"name": spec["name"], "title": spec["title"], "header": header, "rows": rows,
            "notes": _notes(sub, spec), "missing": missing}


def _bold_best(rows, values, first):
    """Bold the highest displayed value per column (ties all bold); every metric here is higher-is-better."""
    for j in range(len(values[0]) if values else 0):
        column = [v[j] for v in values if v[j] is not None]
        for row, v in zip(rows, values):
            if column and v[j] == max(column):
                row[first + j]["bold"] = True


def _notes(sub, spec):
    ns = sorted(set(sub["n"]))
    scaled = ", ".join(label for label, _, m in spec["columns"] if scale_of(m)[0] == 100)
    notes = [f"Median over seeds of each run's best-epoch score ({scaled} ×100); ± is the standard deviation over "
             f"seeds; bold is the best value in its column.",
             "Seeds per cell: n = " + (str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (per cell in the CSV)") + ".",
             "Training examples: " + ", ".join(sorted(set(sub["train_samples"]))) + " (trainer.max_train_samples).",
             "# Params: trainable parameters without the task head (the paper's convention)."]
    if spec["family"] == "e2e":
        notes.append("The paper's Table 3 gives the mean over seeds for its own runs; the mean is in the CSV.")
    if spec["avg"]:
        notes.append("Avg: mean over the row's tasks; (k/N) marks a row with only k of the N tasks (not bolded).")
    if sub["flagged"].any():
        notes.append("!: at least one run in the cell carries a sanity flag (see Flagged runs).")
    if sub["repeated_seeds"].any():
        notes.append("Warning: some cells hold several runs with the same seed (different hyperparameters?).")
    return notes


def frame_table(frame, title, name, notes=()):
    """Any small DataFrame (scorecard, excluded runs) as a table of plain cells, so the same renderers apply."""
    rows = [[cell("" if pd.isna(v) else v) for v in record] for record in frame.itertuples(index=False)]
    return {"name": name, "title": title, "header": [str(c) for c in frame.columns], "rows": rows,
            "notes": list(notes), "missing": []}


def side_sections(runs, tables, problems):
    """The lists that keep the tables honest: runs left out and why, flagged runs, missing cells, unreadable records
    (`problems`: (path, what is wrong) pairs)."""
    sections = []
    if not runs.empty:
        left = not_in_tables(runs)
        sections.append(frame_table(left, "Runs not in the tables", "not_in_tables",
                                    [] if len(left) else ["None: every record is a completed run."]))
        flagged = completed_runs(runs)
        flagged = flagged[flagged["flags"] != ""][["model", "task", "method", "variant", "seed", "flags", "output_dir"]]
        if len(flagged):
            sections.append(frame_table(flagged, "Flagged runs (in the tables, marked !)", "flagged"))
    missing = pd.DataFrame([(t["title"], m) for t in tables for m in t["missing"]], columns=["table", "missing"])
    if len(missing):
        sections.append(frame_table(missing, "Missing cells", "missing"))
    bad = pd.DataFrame(problems, columns=["path", "problem"])
    if len(bad):
        sections.append(frame_table(bad.sort_values("path"), "Unreadable records", "unreadable"))
    return sections


# --- renderers: one small function per format; the cell markup is the only thing that differs ---------------------

def _tex_escape(text):
    out = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    return out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")


_ESCAPE = {"md": lambda t: t.replace("|", r"\|"), "tex": _tex_escape, "html": html.escape}
_BOLD = {"md": "**{}**", "tex": r"\textbf{{{}}}", "html": "<b>{}</b>"}
_STD = {"md": " ±{}", "tex": r"\scriptsize{{±{}}}", "html": "<small>±{}</small>"}
_SUP = {"md": "<sup>{}</sup>", "tex": r"\textsuperscript{{{}}}", "html": "<sup>{}</sup>"}


def render_cell(c, fmt):
    esc = _ESCAPE[fmt]
    text = esc(c["text"])
    text = _BOLD[fmt].format(text) if c["bold"] else text
    text += _STD[fmt].format(esc(c["std"])) if c["std"] else ""
    return text + (_SUP[fmt].format(esc(c["sup"])) if c["sup"] else "")


def to_markdown(table, level=3):
    lines = ["#" * level + " " + table["title"], ""]
    lines.append("| " + " | ".join(_ESCAPE["md"](h) for h in table["header"]) + " |")
    lines.append("|" + "|".join("---" for _ in table["header"]) + "|")
    lines += ["| " + " | ".join(render_cell(c, "md") for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines + [""] + [f"- {n}" for n in table["notes"]] + [""]) + "\n"


def to_latex(table):
    ncols = len(table["header"])
    lines = [f"% {table['title']}"] + [f"% {n}" for n in table["notes"]]
    columns = table.get("tex_columns") or "l" * min(ncols, 3) + "r" * max(ncols - 3, 0)
    lines += [r"\begin{tabular}{" + columns + "}", r"\toprule"]
    lines.append(" & ".join(_tex_escape(h) for h in table["header"]) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(render_cell(c, "tex") for c in row) + r" \\" for row in table["rows"]]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def to_html(table, level=3):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table["header"])
    body = ["<tr>" + "".join(f"<td>{render_cell(c, 'html')}</td>" for c in row) + "</tr>" for row in table["rows"]]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table["notes"])
    return (f"<h{level}>{html.escape(table['title'])}</h{level}>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table>\n" + (f"<ul>{notes}</ul>\n" if notes else ""))
