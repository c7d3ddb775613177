"""WikiSQL: readers, query text round trip, official-style logical-form and execution accuracy on a small fixture in the
official release format (jsonl + tables.jsonl + SQLite .db built here), and the real dev questions when present."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from omegaconf import OmegaConf

from harness.errors import DataError

from harness.metrics.wikisql import execute_sql, logical_form_equal, score_wikisql, to_number
from harness.score import main as score_main
from harness.tasks.config import task_config
from tests.conftest import compose_cfg
from harness.tasks.wikisql import (prompt_fields, load_examples, parse_sql_text, read_questions, split_paths,
                                   sql_to_text, table_name)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "data")

RAPTORS = {"id": "1-10015132-11", "header": ["Player", "No.", "Nationality", "Position", "Years in Toronto", "School/Club Team"],
           "types": ["text", "real", "text", "text", "text", "text"],
           "rows": [["Antonio Lang", 21, "United States", "Guard-Forward", "1999-2000", "Duke"],
                    ["Voshon Lenard", 2, "United States", "Guard", "2002-03", "Minnesota"],
                    ["Martin Lewis", 32, "United States", "Guard-Forward", "1996-97", "Butler CC (KS)"],
                    ["Brad Lohaus", 33, "United States", "Forward-Center", "1996", "Iowa"],
                    ["Art Long", 42, "United States", "Forward-Center", "2002-03", "Cincinnati"]]}
# Awkward names: one is a prefix of another, one holds "and", one has parentheses.
BANDS = {"id": "2-1234-5", "header": ["Year", "Year of birth", "Score (pts)", "Name and title"],
         "types": ["real", "real", "real", "text"],
         "rows": [[1999, 1970, 12.5, "Rock and Roll"], [2001, 1985, 7, "Smith AND Jones"], [2001, 1990, 3, "Solo"]]}
QUESTIONS = [
    ("What position does the player who played for butler cc (ks) play?", RAPTORS, {"sel": 3, "agg": 0, "conds": [[5, 0, "Butler CC (KS)"]]}),
    ("How many schools did player number 3 play at?", RAPTORS, {"sel": 5, "agg": 3, "conds": [[1, 0, "3"]]}),
    ("Who wears number 42?", RAPTORS, {"sel": 0, "agg": 0, "conds": [[1, 0, 42]]}),
    ("Which forward-centers have a number over 30?", RAPTORS, {"sel": 0, "agg": 0, "conds": [[1, 1, "30"], [3, 0, "Forward-Center"]]}),
    ("Total score of Smith and Jones after 2000?", BANDS, {"sel": 2, "agg": 4, "conds": [[3, 0, "Smith AND Jones"], [0, 1, "2000"]]}),
]


def write_fixture(root: Path, split: str = "dev") -> Path:
    folder = root / "wikisql"
    folder.mkdir(parents=True)
    with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as fh:
        for question, table, sql in QUESTIONS:
            fh.write(json.dumps({"phase": 1, "table_id": table["id"], "question": question, "sql": sql}) + "\n")
    with open(folder / f"{split}.tables.jsonl", "w", encoding="utf-8") as fh:
        for table in (RAPTORS, BANDS):
            fh.write(json.dumps(table) + "\n")
    # The official .db: table_<id, - -> _>, columns col0..colN typed text/real, text values lower-cased.
    conn = sqlite3.connect(folder / f"{split}.db")
    for table in (RAPTORS, BANDS):
        name = "table_" + table["id"].replace("-", "_")
        columns = ", ".join(f"col{i} {t}" for i, t in enumerate(table["types"]))
        conn.execute(f"CREATE TABLE {name} ({columns})")
        for row in table["rows"]:
            values = [float(v) if t == "real" else str(v).lower() for v, t in zip(row, table["types"])]
            conn.execute(f"INSERT INTO {name} VALUES ({', '.join('?' * len(values))})", values)
    conn.commit()
    conn.close()
    return root


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return write_fixture(tmp_path / "data")


def test_readers_and_missing_table(data_dir, tmp_path):
    examples = load_examples(data_dir, "dev")
    assert [e["question"] for e in examples] == [q for q, _, _ in QUESTIONS]
    assert examples[4]["header"] == BANDS["header"] and examples[0]["types"][1] == "real"
    assert table_name("1-10015132-11") == "table_1_10015132_11"
    tables = split_paths(data_dir, "dev")["tables"]
    tables.write_text(json.dumps(RAPTORS) + "\n", encoding="utf-8")  # drop the second table
    with pytest.raises(DataError, match=r"table '2-1234-5' .* not found in .*dev\.tables\.jsonl"):
        load_examples(data_dir, "dev")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "table_id": "t", "sql": {"sel": 0, "agg": 0, "conds": []}}\n{"question": "q"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: missing key\(s\) \['table_id', 'sql'\]"):
        read_questions(bad)


def test_sql_text_round_trip_and_parse_failures():
    header = BANDS["header"]
    text = "SELECT SUM(Score (pts)) FROM table WHERE Name and title = Smith AND Jones AND Year > 2000"
    assert sql_to_text(QUESTIONS[4][2], header) == text
    assert parse_sql_text(text, header) == {"sel": 2, "agg": 4, "conds": [[3, 0, "Smith AND Jones"], [0, 1, "2000"]]}
    # "Year" is a prefix of "Year of birth"; keywords and names are case/space-insensitive; only the first line counts
    assert parse_sql_text("select  year of BIRTH from table where Year of birth < 1980\nQuestion: ...", header) == {
        "sel": 1, "agg": 0, "conds": [[1, 2, "1980"]]}
    assert parse_sql_text("SELECT Year FROM table", header) == {"sel": 0, "agg": 0, "conds": []}
    for bad in ["", "DROP TABLE x", "SELECT Height FROM table", "SELECT Year FROM table WHERE Year ~ 3",
                "SELECT Year FROM table WHERE Year =", "SELECT MAX(Year FROM table", "SELECT Year FROM table LIMIT 1", None]:
        assert parse_sql_text(bad, header) is None, bad


def test_logical_form_equality_is_official():
    gold = {"sel": 0, "agg": 0, "conds": [[1, 0, "Butler CC (KS)"], [2, 1, 3]]}
    assert logical_form_equal({"sel": 0, "agg": 0, "conds": [[2, 1, "3"], [1, 0, "butler cc (ks)"]]}, gold)
    assert not logical_form_equal({"sel": 0, "agg": 0, "conds": [[2, 1, "3.0"], [1, 0, "butler cc (ks)"]]}, gold)
    assert not logical_form_equal({"sel": 0, "agg": 3, "conds": gold["conds"]}, gold)


def test_execution_conventions(data_dir):
    conn = sqlite3.connect(split_paths(data_dir, "dev")["db"])
    # real column: thousands commas dropped / first number taken, as dbengine.py with babel's parse_decimal
    assert to_number("1,000") == 1000.0 and to_number("about 3.5 km") == 3.5
    with pytest.raises(ValueError):
        to_number("n/a")
    assert execute_sql(conn, RAPTORS["id"], {"sel": 0, "agg": 0, "conds": [[1, 1, "30"], [3, 0, "Forward-Center"]]}) == [
        "brad lohaus", "art long"]
    assert execute_sql(conn, RAPTORS["id"], {"sel": 1, "agg": 5, "conds": []}) == [26.0]  # AVG(21, 2, 32, 33, 42)
    # dbengine.py binds one parameter per column: both conditions on col1 see 40 -> col1 > 40 AND col1 < 40
    assert execute_sql(conn, RAPTORS["id"], {"sel": 0, "agg": 0, "conds": [[1, 1, "30"], [1, 2, "40"]]}) == []
    conn.close()


PREDICTIONS = [
    "SELECT Position FROM table WHERE School/Club Team = Butler CC (KS)",  # exact: LF and EX right
    "SELECT COUNT(School/Club Team) FROM table WHERE No. = 3",  # exact ("3" = "3"): both right, result [0]
    "SELECT Player FROM table WHERE Player = art long",  # other query, same result ["art long"]: EX only
    "SELECT Player FROM table WHERE No. = many",  # parses, but no number for the real column: exec failure
    "the answer is 19.5",  # does not parse
]


def test_score_wikisql_by_hand(data_dir):
    # LF: items 1, 2 right -> 2/5. EX: items 1, 2, 3 right -> 3/5. One parse failure (5), one exec failure (4).
    db = split_paths(data_dir, "dev")["db"]
    scores = score_wikisql(PREDICTIONS, load_examples(data_dir, "dev"), db)
    assert scores == {"logical_form_acc": 0.4, "execution_acc": 0.6, "n": 5, "parse_failures": 1, "exec_failures": 1,
                      "gold_exec_failures": 0}
    gold_texts = [sql_to_text(sql, table["header"]) for _, table, sql in QUESTIONS]
    assert score_wikisql(gold_texts, load_examples(data_dir, "dev"), db)["execution_acc"] == 1.0
    with pytest.raises(ValueError, match="4 predictions but 5 examples"):
        score_wikisql(PREDICTIONS[:4], load_examples(data_dir, "dev"), db)


def test_cli(data_dir, tmp_path, capsys):
    preds = tmp_path / "preds.txt"
    preds.write_text("\n".join(PREDICTIONS) + "\n", encoding="utf-8")
    assert score_main(["wikisql", str(preds), "--data-dir", str(data_dir), "--split", "dev", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["execution_acc"] == 0.6
    assert score_main(["wikisql", str(preds), "--data-dir", str(data_dir / "wikisql")]) == 0  # the folder itself
    assert "logical_form_acc: 0.4000" in capsys.readouterr().out
    assert score_main(["wikisql", str(preds), "--data-dir", str(data_dir), "--split", "test"]) == 2
    assert capsys.readouterr().err.strip() == f"harness-score: error: WikiSQL file not found: {data_dir / 'wikisql' / 'test.jsonl'}"


def test_build_prompt():
    """The shipped task yaml's prompt template, filled with the module's fields."""
    task = task_config(OmegaConf.to_container(compose_cfg("task=wikisql").task, resolve=True))
    assert task.render_prompt(prompt_fields(" Who wears number 42? ", ["Player", "No."])) == (
        "Table columns: Player | No.\nQuestion: Who wears number 42?\nSQL:")


def test_real_dev_questions_round_trip():
    path = SHARED_DATA / "wikisql" / "dev.jsonl"
    if not path.is_file():
        pytest.skip(f"real WikiSQL questions not found at {path} (set HARNESS_DATA_DIR)")
    questions = read_questions(path)
    assert len(questions) == 8421  # official v1.1 dev size
    for q in questions:  # no tables in this folder: stand-in names with spaces, digits and a shared prefix
        sql = q["sql"]
        header = [f"Col {i} name" for i in range(1 + max([sql["sel"]] + [c[0] for c in sql["conds"]]))]
        parsed = parse_sql_text(sql_to_text(sql, header), header)
        assert parsed is not None and logical_form_equal(parsed, sql), q
        assert parsed["conds"] == [[col, op, str(value)] for col, op, value in sql["conds"]]  # order and text kept
