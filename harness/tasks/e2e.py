"""E2E NLG Challenge (Novikova, Dušek & Rieser, 2017), the dataset module of `dataset: e2e`: the official CSV release
(or the hub copy), the MR linearised for the prompt (`{mr}`), scoring by the official metrics (harness/metrics/e2e.py).

Training pairs are (MR, reference) rows in file order; evaluation is once per distinct MR against all its references
(one reference per line of references.txt, MRs separated by a blank line: the official scorer's format).

Files (tuetschek/e2e-dataset): ``trainset.csv``, ``devset.csv``, ``testset_w_refs.csv`` with a header line and the
columns ``mr,ref``; one row per (meaning representation, human reference) pair, several rows per MR. Any of them may
be gzip-compressed (``.csv.gz``). ``testset.csv`` (MRs only, column ``MR``) is read for the test split when
``testset_w_refs.csv`` is absent: its MRs are decoded, not scored (no references; never a training split).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from harness.errors import DataError
from harness.io import data_dir as resolve_data_dir, sha256_file, text_lines
from harness.tasks.pipeline import EvalItem

EXPECTED_COLUMNS = ("mr", "ref")
SPLIT_FILES = {"train": "trainset", "dev": "devset", "test": "testset_w_refs"}
MRS_ONLY = {"test": "testset"}                       # the release's test MRs without references, the fallback
OPTIONS = ("hub",)                                   # the hub copy: {path, mr, ref, splits}
METRICS = ("bleu", "nist", "meteor", "rouge_l", "cider")
PROMPT_FIELDS = ("mr",)                              # the linearised MR

# Attribute names as the LoRA / Prefix-Tuning linearisation writes them (data/e2e_nlg/SOURCE.md).
_ATTRIBUTE_NAMES = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly"}
_MR_ITEM = re.compile(r"\s*([^,\[\]]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


def read_e2e_csv(path: str | Path, mrs_only: bool = False) -> list[tuple[str, str | None]]:
    """All (mr, ref) pairs of an official E2E CSV, in file order; with `mrs_only`, a file of MRs alone (testset.csv,
    column ``MR``) is read too, as (mr, None) pairs.

    Raises DataError when the ``mr``/``ref`` columns are missing (naming the file, the columns found and the ones
    expected) or when rows have an empty MR or reference (counting them and naming the file and first lines).
    """
    path = Path(path)
    pairs, bad_lines = [], []
    reader = csv.reader(line + "\n" for line in text_lines(path))
    header = next(reader, None) or []
    columns = [c.strip().lower() for c in header]
    no_refs = mrs_only and columns == ["mr"]
    missing = [c for c in EXPECTED_COLUMNS if c not in columns and not no_refs]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found columns {header}, expected {list(EXPECTED_COLUMNS)}"
                        + (" (testset.csv has MRs only: use testset_w_refs.csv)" if columns == ["mr"] else ""))
    i_mr, i_ref = columns.index("mr"), None if no_refs else columns.index("ref")
    for row in reader:
        if not any(field.strip() for field in row):
            continue  # blank line
        mr = row[i_mr].strip() if i_mr < len(row) else ""
        ref = None if no_refs else row[i_ref].strip() if i_ref < len(row) else ""
        if not mr or ref == "":
            bad_lines.append(reader.line_num)  # line where this record ends (records may span lines)
            continue
        pairs.append((mr, ref))
    if bad_lines:
        shown = ", ".join(map(str, bad_lines[:10])) + (", ..." if len(bad_lines) > 10 else "")
        raise DataError(f"{path}: {len(bad_lines)} row(s) with an empty MR or no reference, at line(s) {shown}")
    return pairs


def group_by_mr(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """References grouped by identical MR, MRs in order of first appearance (how the official evaluation groups)."""
    groups: dict[str, list[str]] = {}
    for mr, ref in pairs:
        groups.setdefault(mr, []).append(ref)
    return list(groups.items())


def parse_mr(mr: str) -> list[tuple[str, str]]:
    """``"name[The Eagle], food[French]"`` -> ``[("name", "The Eagle"), ("food", "French")]``."""
    items, pos = [], 0
    while pos < len(mr):
        m = _MR_ITEM.match(mr, pos)
        if not m:
            raise DataError(f"cannot parse MR at character {pos}: {mr!r} (expected 'attribute[value], ...')")
        items.append((m.group(1), m.group(2).strip()))
        pos = m.end()
    if not items:
        raise DataError(f"empty MR: {mr!r}")
    return items


def linearize_mr(mr: str) -> str:
    """Plain-text prompt for a causal LM: ``"name : The Eagle | Type : pub | family friendly : yes"``.

    Attributes keep their MR order and use the names of the LoRA-paper data format (eatType -> Type,
    priceRange -> price, familyFriendly -> family friendly); values are copied verbatim (the LoRA files also
    tokenise them, e.g. ``£20-25`` -> ``£ 20 - 25``; we leave that to the model's tokenizer). In that format the
    reference follows after ``||``.
    """
    return " | ".join(f"{_ATTRIBUTE_NAMES.get(attr, attr)} : {value}" for attr, value in parse_mr(mr))


def find_e2e_file(data_dir: str | Path | None, split: str, mrs_only: bool = False) -> Path:
    """Path of a split's CSV: ``<data_dir>/e2e_nlg/csv/{trainset,devset,testset_w_refs}.csv[.gz]``; with `mrs_only`,
    the test split's MRs without references (``testset.csv``) when ``testset_w_refs.csv`` is absent.

    ``data_dir`` defaults to ``$HARNESS_DATA_DIR``, then to ``../shared/data`` beside the repository.
    ``split`` is ``train``, ``dev`` or ``test`` (or the file stem itself).
    """
    stem = SPLIT_FILES.get(split, split)
    if stem not in SPLIT_FILES.values():
        raise ValueError(f"unknown E2E split {split!r}: expected one of {sorted(SPLIT_FILES)}")
    env = os.environ.get("HARNESS_DATA_DIR")
    base = resolve_data_dir(data_dir)
    stems = [stem] + ([MRS_ONLY[split]] if mrs_only and split in MRS_ONLY else [])
    tried = [base / "e2e_nlg" / "csv" / f"{s}{ext}" for s in stems for ext in (".csv", ".csv.gz")]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise DataError(f"E2E {split} file not found; tried {', '.join(map(str, tried))} (HARNESS_DATA_DIR={env!r}; "
                    "set it or task.data_dir to the folder holding e2e_nlg/csv/)")


def load_e2e_split(data_dir: str | Path | None, split: str) -> list[tuple[str, list[str]]]:
    """(mr, [references]) for a split, MRs in order of first appearance."""
    return group_by_mr(read_e2e_csv(find_e2e_file(data_dir, split)))


def _hub_pairs(task, split: str) -> tuple[list[tuple[str, str]], dict]:
    import datasets

    hub = task.options["hub"]
    try:
        ds = datasets.load_dataset(hub["path"], split=hub["splits"][split])
    except Exception as exc:  # offline machines land here; say how to use local files instead
        raise DataError(f"could not load {hub['path']} split {hub['splits'][split]!r} from the hub "
                        f"({type(exc).__name__}); set HARNESS_DATA_DIR to a folder holding e2e_nlg/csv/") from exc
    pairs = [(str(mr or "").strip(), str(ref or "").strip()) for mr, ref in zip(ds[hub["mr"]], ds[hub["ref"]])]
    bad = [i for i, (mr, ref) in enumerate(pairs) if not mr or not ref]
    if bad:
        raise DataError(f"{hub['path']} split {split!r}: {len(bad)} row(s) with an empty MR or no reference, "
                        f"first row {bad[0]}")
    return pairs, {"hub": hub["path"], "fingerprint": ds._fingerprint}


def read(task, split: str) -> tuple[list[dict], dict]:
    """Every (MR, reference) row of a split as an example {input: MR, target: reference, mr: linearised MR}; the
    evaluation split may be the test MRs without references (target None), never the training split."""
    if task.data_dir:
        mrs_only = split == task.eval_split and split != task.splits["train"]
        path = find_e2e_file(task.data_dir, split, mrs_only)
        pairs, source = read_e2e_csv(path, mrs_only), {"path": str(path), "sha256": sha256_file(path)}
    else:
        pairs, source = _hub_pairs(task, split)
    return [{"input": mr, "target": ref, "mr": linearize_mr(mr)} for mr, ref in pairs], source


def eval_items(task, examples: list[dict]) -> list[EvalItem]:
    """One item per distinct MR, with all its references. A reference holding a line break would shift every group
    after it in references.txt, so whitespace is collapsed."""
    groups = group_by_mr([(ex["input"], ex["target"] and " ".join(ex["target"].split())) for ex in examples])
    return [EvalItem(mr, {"mr": linearize_mr(mr)}, [r for r in refs if r is not None]) for mr, refs in groups]


def score(task, outputs: list[str], items: list[EvalItem]) -> dict:
    from harness.metrics.e2e import score_e2e

    return score_e2e(outputs, [item.references for item in items])


def interval(task, outputs: list[str], items: list[EvalItem]) -> dict | None:
    """The 95 % bootstrap interval of corpus BLEU over the MRs (harness/metrics/e2e.py `bleu_interval`)."""
    from harness.metrics.e2e import bleu_interval

    return bleu_interval(outputs, [item.references for item in items]) if task.headline == "bleu" else None


def check_data(task) -> list[str]:
    """Start-up check, before any model loads: the local CSV of every split is there (hub data is checked when it
    downloads). One message per missing file."""
    problems = []
    for split in (task.splits["train"], task.eval_split) if task.data_dir else ():
        try:
            find_e2e_file(task.data_dir, split, mrs_only=split == task.eval_split != task.splits["train"])
        except DataError as exc:
            problems.append(str(exc))
    return problems
