"""``harness-score``: score generated outputs with the official metrics of a task.

    harness-score e2e OUTPUTS REFERENCES [--json]
        OUTPUTS: one system output per line (one per MR); REFERENCES: the official scorer's format (the references
        of one MR one per line, MRs separated by a blank line). Prints BLEU, NIST, METEOR, ROUGE_L, CIDEr.
    harness-score wikisql PREDICTIONS [--data-dir DIR] [--split dev] [--json]
        PREDICTIONS: one query text per line (``SELECT ... FROM table WHERE ...``), in the order of
        ``DIR/wikisql/{split}.jsonl``; tables from ``{split}.tables.jsonl``, execution on ``{split}.db``.

Input errors (missing file, count mismatch, malformed data) print one line naming the cause and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import DataError, HarnessError

E2E_NAMES = {"bleu": "BLEU", "nist": "NIST", "meteor": "METEOR", "rouge_l": "ROUGE_L", "cider": "CIDEr"}


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {path}")
    return p


def _score_e2e(args) -> tuple[dict, list[str]]:
    from harness.metrics.e2e import read_references, read_system_outputs, score_e2e

    outputs = read_system_outputs(_existing(args.outputs))
    references = read_references(_existing(args.references))
    scores = score_e2e(outputs, references)
    return scores, [f"{E2E_NAMES[k]}: {v:.4f}" for k, v in scores.items()]


def _score_wikisql(args) -> tuple[dict, list[str]]:
    from harness.metrics.wikisql import score_wikisql
    from harness.tasks.wikisql import load_examples, split_paths

    preds = _existing(args.predictions).read_text(encoding="utf-8").splitlines()
    examples = load_examples(args.data_dir, args.split)  # errors name the missing file
    scores = score_wikisql(preds, examples, split_paths(args.data_dir, args.split)["db"])
    return scores, [f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in scores.items()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness-score", description="Score generated outputs with official metrics.")
    sub = parser.add_subparsers(dest="task", required=True)
    e2e = sub.add_parser("e2e", help="E2E NLG: BLEU, NIST, METEOR, ROUGE-L, CIDEr (official scorer's values)")
    e2e.add_argument("outputs", help="system outputs, one line per MR")
    e2e.add_argument("references", help="references: one per line, MRs separated by a blank line")
    e2e.set_defaults(run=_score_e2e)
    wikisql = sub.add_parser("wikisql", help="WikiSQL: logical-form and execution accuracy")
    wikisql.add_argument("predictions", help="predicted query texts, one line per question")
    wikisql.add_argument("--data-dir", default=None, help="folder holding wikisql/ (default: $HARNESS_DATA_DIR)")
    wikisql.add_argument("--split", default="dev", help="dev, test or train (default: dev)")
    wikisql.set_defaults(run=_score_wikisql)
    for p in (e2e, wikisql):
        p.add_argument("--json", action="store_true", help="print the scores as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scores, lines = args.run(args)
    except (HarnessError, ValueError, UnicodeDecodeError) as e:
        message = " ".join(str(e).split())  # one line
        print(f"harness-score: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(scores, indent=2) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
