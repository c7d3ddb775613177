"""WikiSQL (Zhong, Xiong & Socher, 2017), the dataset module of `dataset: wikisql`: the official release format
(salesforce/WikiSQL, ``data/``), the prompt fields ``{columns}`` and ``{question}``, and scoring by logical-form and
execution accuracy (harness/metrics/wikisql.py).

* ``{split}.jsonl``: one question per line: ``question``, ``table_id``, ``sql = {sel, agg, conds: [[col, op, value]]}``
  with ``agg`` an index into ``AGG_OPS`` and ``op`` an index into ``COND_OPS`` (``lib/query.py``).
* ``{split}.tables.jsonl``: one table per line: ``id``, ``header``, ``types`` (``text``/``real``), ``rows``.
* ``{split}.db``: SQLite; table ``table_<id with - replaced by _>``, columns ``col0, col1, ...``, text values
  lower-cased (the evaluator lower-cases condition values before comparing, ``lib/dbengine.py``).

The model writes the query as text with real column names (``sql_to_text``), e.g.
``SELECT COUNT(School/Club Team) FROM table WHERE Player = Amir Johnson AND No. = 3``; ``parse_sql_text`` reads it back.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from harness.errors import DataError
from harness.io import data_dir as resolve_data_dir, sha256_file, text_lines
from harness.tasks.pipeline import EvalItem

AGG_OPS = ["", "MAX", "MIN", "COUNT", "SUM", "AVG"]
COND_OPS = ["=", ">", "<", "OP"]
METRICS = ("logical_form_acc", "execution_acc")
PROMPT_FIELDS = ("columns", "question")

_AGG_CALL = re.compile(r"(MAX|MIN|COUNT|SUM|AVG)\s*\((.*)\)", re.I | re.S)
_FROM = re.compile(r"\s+FROM\s+table\b", re.I)
_WHERE = re.compile(r"\s+WHERE\s+", re.I)
_AND = re.compile(r"\s+AND\s+", re.I)
_OP = re.compile(r"\s*([=<>])\s*|\s+(OP)\s+")


def table_name(table_id: str) -> str:
    """SQLite table name of a WikiSQL table id (``1-10015132-11`` -> ``table_1_10015132_11``), as lib/dbengine.py."""
    return table_id if table_id.startswith("table") else "table_" + table_id.replace("-", "_")


def _read_jsonl(path: str | Path, required: tuple[str, ...]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"WikiSQL file not found: {path}")
    records = []
    for line_no, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in required if k not in record]
        if missing:
            raise DataError(f"{path}:{line_no}: missing key(s) {missing}; expected {list(required)}")
        records.append(record)
    return records


def read_questions(path: str | Path) -> list[dict]:
    """Questions of ``{split}.jsonl`` (dicts with ``question, table_id, sql``), checking the SQL fields."""
    questions = _read_jsonl(path, ("question", "table_id", "sql"))
    for i, q in enumerate(questions, start=1):
        sql = q["sql"]
        if not (isinstance(sql, dict) and {"sel", "agg", "conds"} <= set(sql)):
            raise DataError(f"{path}: record {i}: 'sql' must have keys sel, agg, conds; got {sql!r}")
    return questions


def read_tables(path: str | Path) -> dict[str, dict]:
    """Tables of ``{split}.tables.jsonl`` by id (dicts with ``id, header, types, rows``)."""
    return {t["id"]: t for t in _read_jsonl(path, ("id", "header", "types", "rows"))}


def split_paths(data_dir: str | Path | None, split: str) -> dict[str, Path]:
    """``questions``, ``tables`` and ``db`` paths of a split under ``<data_dir>/wikisql/`` (or ``<data_dir>/``).

    ``data_dir`` defaults to ``$HARNESS_DATA_DIR``, then to ``../shared/data`` beside the repository.
    """
    root = resolve_data_dir(data_dir)
    # also accept the wikisql folder itself (the official data/ folder holds the files directly)
    base = root if (root / f"{split}.jsonl").is_file() and not (root / "wikisql").is_dir() else root / "wikisql"
    return {"questions": base / f"{split}.jsonl", "tables": base / f"{split}.tables.jsonl", "db": base / f"{split}.db"}


def load_examples(data_dir: str | Path | None, split: str) -> list[dict]:
    """Questions joined with their table's header and types: dicts ``question, table_id, sql, header, types``."""
    paths = split_paths(data_dir, split)
    questions = read_questions(paths["questions"])
    tables = read_tables(paths["tables"])
    examples = []
    for q in questions:
        table = tables.get(q["table_id"])
        if table is None:
            raise DataError(f"table {q['table_id']!r} (question {q['question']!r}) not found in {paths['tables']}")
        _check_sql(q["sql"], table["header"], paths["questions"], q["question"])
        examples.append({**q, "header": list(table["header"]), "types": list(table["types"])})
    return examples


def _check_sql(sql: dict, header: list, path: Path, question: str) -> None:
    """Every index of a query within its table and the operator lists (lib/query.py's sel, agg, conds)."""
    def bad(what: str) -> DataError:
        return DataError(f"{path}: question {question!r}: {what}")

    if not isinstance(sql["sel"], int) or not 0 <= sql["sel"] < len(header):
        raise bad(f"sql.sel={sql['sel']!r} is not a column index of its table (0 … {len(header) - 1})")
    if not isinstance(sql["agg"], int) or not 0 <= sql["agg"] < len(AGG_OPS):
        raise bad(f"sql.agg={sql['agg']!r} is not an aggregation index (0 … {len(AGG_OPS) - 1}: {AGG_OPS})")
    for cond in sql["conds"]:
        ok = isinstance(cond, (list, tuple)) and len(cond) == 3 and isinstance(cond[0], int) \
            and 0 <= cond[0] < len(header) and isinstance(cond[1], int) and 0 <= cond[1] < len(COND_OPS)
        if not ok:
            raise bad(f"sql.conds entry {cond!r} is not [column index, operator index 0 … {len(COND_OPS) - 1}, value]")


def sql_to_text(sql: dict, header: list[str]) -> str:
    """``{sel, agg, conds}`` -> ``SELECT AGG(col) FROM table WHERE col op value AND ...`` with the header's names."""
    names = [" ".join(h.split()) for h in header]  # one line: a header may hold a newline
    sel, agg = names[sql["sel"]], AGG_OPS[sql["agg"]]
    text = f"SELECT {agg}({sel}) FROM table" if agg else f"SELECT {sel} FROM table"
    # str(value): the official evaluator compares str(value).lower(), so numbers are written as Python prints them
    conds = [f"{names[col]} {COND_OPS[op]} {value}" for col, op, value in sql["conds"]]
    return text + (" WHERE " + " AND ".join(conds) if conds else "")


def _norm(name: str) -> str:
    return " ".join(name.split()).lower()


def _column_index(text: str, header: list[str]) -> int | None:
    names = [_norm(h) for h in header]
    key = _norm(text)
    return names.index(key) if key in names else None


def _parse_select(text: str, header: list[str]) -> tuple[int, int] | None:
    m = _AGG_CALL.fullmatch(text.strip())
    if m and (col := _column_index(m.group(2), header)) is not None:
        return col, AGG_OPS.index(m.group(1).upper())
    col = _column_index(text, header)
    return None if col is None else (col, 0)


def _parse_conds(text: str, header: list[str]) -> list | None:
    """Conditions ``col op value AND ...``; column names guide the split, values may contain anything.

    At each position every header name that fits is tried (longest first), then the value ends at the first
    `` AND `` after which the rest parses again, or at the end. Memoised on the position, so it stays linear-ish.
    """
    patterns = sorted(((i, re.compile(r"\s+".join(map(re.escape, h.split())), re.I)) for i, h in enumerate(header)
                       if h.split()), key=lambda p: -len(p[1].pattern))

    @lru_cache(maxsize=None)
    def parse_from(pos: int):
        for col, pattern in patterns:
            m = pattern.match(text, pos)
            op_m = m and _OP.match(text, m.end())
            if not op_m:
                continue
            op = COND_OPS.index(op_m.group(1) or op_m.group(2))
            start = op_m.end()
            for and_m in _AND.finditer(text, start):
                value = text[start:and_m.start()].strip()
                rest = parse_from(and_m.end()) if value else None
                if rest is not None:
                    return [[col, op, value]] + rest
            value = text[start:].strip()
            if value:
                return [[col, op, value]]
        return None

    return parse_from(0)


def parse_sql_text(text: str, header: list[str]) -> dict | None:
    """Inverse of ``sql_to_text``: ``{sel, agg, conds}`` (values as strings), or None when it does not parse.

    Only the first non-empty line counts (a generation may go on after the query). Keywords are case-insensitive,
    column names are matched case- and whitespace-insensitively against the header (first match wins).
    """
    if not isinstance(text, str):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    m = re.match(r"SELECT\s+", lines[0], re.I) if lines else None
    if not m:
        return None
    body = lines[0][m.end():]
    for from_m in _FROM.finditer(body):  # a column name may itself contain "from table": try each
        select = _parse_select(body[:from_m.start()], header)
        if select is None:
            continue
        tail = body[from_m.end():]
        if not tail.strip():
            return {"sel": select[0], "agg": select[1], "conds": []}
        where_m = _WHERE.match(tail)
        conds = _parse_conds(tail[where_m.end():], header) if where_m else None
        if conds is not None:
            return {"sel": select[0], "agg": select[1], "conds": conds}
    return None


def prompt_fields(question: str, header: list[str]) -> dict:
    """The prompt template's fields: the table's columns as the query names them (one line each), the question."""
    return {"columns": " | ".join(" ".join(h.split()) for h in header), "question": question.strip()}


def read(task, split: str) -> tuple[list[dict], dict]:
    """Every question of a split joined with its table, as an example {input: question, target: the query written
    out, columns, question, ...the official record}; a question whose table is missing is a DataError naming it."""
    paths = split_paths(task.data_dir, split)
    examples = load_examples(task.data_dir, split)
    provenance = {k: {"path": str(p), "sha256": sha256_file(p)} for k, p in paths.items() if k != "db"}
    return [{**ex, **prompt_fields(ex["question"], ex["header"]), "input": ex["question"],
             "target": sql_to_text(ex["sql"], ex["header"])} for ex in examples], provenance


def eval_items(task, examples: list[dict]) -> list[EvalItem]:
    """One item per question (the gold query its one reference); execution accuracy needs the split's database."""
    db = split_paths(task.data_dir, task.eval_split)["db"]
    if not db.is_file():  # fail now, not after training
        raise DataError(f"WikiSQL database not found: {db} (the official {task.eval_split}.db, needed for execution "
                        "accuracy)")
    return [EvalItem(ex["input"], {k: ex[k] for k in PROMPT_FIELDS}, [ex["target"]], ex) for ex in examples]


def score(task, outputs: list[str], items: list[EvalItem]) -> dict:
    from harness.metrics.wikisql import score_wikisql

    return score_wikisql(outputs, [item.example for item in items], split_paths(task.data_dir, task.eval_split)["db"])


def interval(task, outputs: list[str], items: list[EvalItem]) -> dict | None:
    """The 95 % bootstrap interval of logical-form accuracy over the questions (harness/stats.py)."""
    import numpy as np

    from harness.metrics.wikisql import logical_form_hits
    from harness.stats import bootstrap_interval

    if task.headline != "logical_form_acc":
        return None
    hits = np.array(logical_form_hits(outputs, [item.example for item in items]), dtype=float)
    found = bootstrap_interval(lambda idx: float(hits[idx].mean()), len(hits))
    return {"metric": "logical_form_acc", "value": float(hits.mean()), **found}


def references_text(items: list[EvalItem]) -> str:
    """references.txt: the gold query of each question, one per line (`harness-score wikisql` reads predictions so)."""
    return "".join(item.references[0] + "\n" for item in items)


def check_data(task) -> list[str]:
    """Start-up check: the questions and tables of both splits, and the evaluation split's database."""
    problems = []
    for split in (task.splits["train"], task.eval_split):
        paths = split_paths(task.data_dir, split)
        wanted = ("questions", "tables", "db") if split == task.eval_split else ("questions", "tables")
        problems += [f"WikiSQL {split} file not found: {paths[k]}" for k in wanted if not paths[k].is_file()]
    return problems
