"""WikiSQL metrics as the official evaluator computes them (salesforce/WikiSQL ``evaluate.py``).

* Logical-form accuracy: ``lib/query.py`` ``Query.__eq__`` (default, unordered): same ``sel``, same ``agg``, and the
  same *set* of conditions ``(col, op, str(value).lower())``: condition order is ignored, values compared
  case-insensitively and as strings (so ``1939`` and ``1939.0`` differ).
* Execution accuracy: ``lib/dbengine.py`` ``DBEngine.execute``: run ``SELECT agg(colN) AS result FROM table_<id>
  WHERE colK op :colK ...`` on ``{split}.db`` with string values lower-cased and, for ``real`` columns, turned into
  numbers; the prediction is right when its list of results equals the gold one.

A prediction that does not parse, or whose query fails to execute, is wrong (and counted), never an exception.
"""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal, InvalidOperation
from pathlib import Path

from harness.errors import DataError
from harness.tasks.wikisql import AGG_OPS, COND_OPS, parse_sql_text, table_name

_NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")  # dbengine.py's fallback: the first number in the text


def logical_form_equal(pred: dict, gold: dict) -> bool:
    """``Query.__eq__`` of the official code (unordered conditions, values compared as lower-cased strings)."""
    def conds(sql):
        return {(col, op, str(value).lower()) for col, op, value in sql["conds"]}

    return pred["sel"] == gold["sel"] and pred["agg"] == gold["agg"] and conds(pred) == conds(gold)


def to_number(value: str) -> float:
    """A condition value for a ``real`` column: babel's ``parse_decimal`` in English (thousands commas dropped, then
    a decimal literal), else the first number in the text, as dbengine.py does. ValueError when there is none."""
    try:
        return float(Decimal(value.replace(",", "")))
    except InvalidOperation:
        found = _NUMBER.findall(value)
        if not found:
            raise ValueError(f"no number in condition value {value!r} for a real column") from None
        return float(found[0])


def _column_types(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    rows = conn.execute("SELECT name, type FROM pragma_table_info(?)", (table,)).fetchall()
    if not rows:
        raise LookupError(f"no table {table} in the database")
    return {name: str(col_type).lower() for name, col_type in rows}


def execute_sql(conn: sqlite3.Connection, table_id: str, sql: dict) -> list:
    """Results of a ``{sel, agg, conds}`` query on the official database, as ``DBEngine.execute(lower=True)``."""
    table = table_name(table_id)
    types = _column_types(conn, table)
    select = f"col{sql['sel']}"
    agg = AGG_OPS[sql["agg"]]
    if agg:
        select = f"{agg}({select})"
    where, params = [], {}
    for col, op, value in sql["conds"]:
        if isinstance(value, str):
            value = value.lower()
        if types[f"col{col}"] == "real" and not isinstance(value, (int, float)):
            value = to_number(value)
        where.append(f"col{col} {COND_OPS[op]} :col{col}")
        # One parameter per column, as dbengine.py: two conditions on one column both see the last value.
        params[f"col{col}"] = value
    query = f"SELECT {select} AS result FROM {table}" + (" WHERE " + " AND ".join(where) if where else "")
    return [row[0] for row in conn.execute(query, params)]


def score_wikisql(preds: list[str], examples: list[dict], db_path: str | Path) -> dict:
    """Logical-form and execution accuracy of predicted query texts (``sql_to_text`` format).

    ``examples``: dicts with ``table_id``, ``sql`` (gold) and ``header`` (to parse the prediction), e.g. from
    ``harness.tasks.wikisql.load_examples``. Returns ``logical_form_acc, execution_acc`` (0..1), ``n``,
    ``parse_failures``, ``exec_failures`` (parsed predictions whose query failed) and ``gold_exec_failures``
    (gold queries that failed; those examples count as wrong for execution).
    """
    preds, examples = list(preds), list(examples)
    if len(preds) != len(examples):
        raise ValueError(f"{len(preds)} predictions but {len(examples)} examples: counts must match")
    if not examples:
        raise ValueError("nothing to score: 0 predictions and 0 examples")
    db_path = Path(db_path)
    if not db_path.is_file():
        raise DataError(f"WikiSQL database not found: {db_path}")
    lf = ex = parse_failures = exec_failures = gold_failures = 0
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for text, example in zip(preds, examples):
            gold = example["sql"]
            try:
                gold_result = execute_sql(conn, example["table_id"], gold)
            except Exception:  # a broken gold query should not stop the evaluation; it is reported
                gold_result, gold_failures = None, gold_failures + 1
            pred = parse_sql_text(text, example["header"])
            if pred is None:
                parse_failures += 1
                continue
            lf += logical_form_equal(pred, gold)
            try:
                pred_result = execute_sql(conn, example["table_id"], pred)
            except Exception:  # bad column index, unknown table, value without a number for a real column, ...
                exec_failures += 1
                continue
            ex += gold_result is not None and pred_result == gold_result
    finally:
        conn.close()
    n = len(examples)
    return {"logical_form_acc": lf / n, "execution_acc": ex / n, "n": n, "parse_failures": parse_failures,
            "exec_failures": exec_failures, "gold_exec_failures": gold_failures}


def logical_form_hits(preds: list[str], examples: list[dict]) -> list[bool]:
    """Per question, whether the predicted query text parses to the gold logical form (the paper's metric); their
    mean is `logical_form_acc`."""
    hits = []
    for text, example in zip(preds, examples):
        pred = parse_sql_text(text, example["header"])
        hits.append(pred is not None and bool(logical_form_equal(pred, example["sql"])))
    return hits
