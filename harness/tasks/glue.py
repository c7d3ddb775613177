"""GLUE readers: the original GLUE tsv layout (local folder) or the Hugging Face hub (`nyu-mll/glue`).

GLUE's tsv files are tab-separated with no quoting at all (a `"` is an ordinary character), so they are split on tabs
rather than read with the csv module's default dialect. MRPC's header starts with a UTF-8 BOM (GLUE's download script
carries it over), hence `utf-8-sig`.
"""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from harness.errors import DataError


def find_split_file(data_dir: str | Path, glue_dir: str, split: str) -> Path:
    folder = Path(data_dir) / "glue" / glue_dir
    tried = [folder / f"{split}.tsv", folder / f"{split}.tsv.gz"]
    for path in tried:
        if path.is_file():
            return path
    raise DataError(
        f"GLUE file not found: tried {tried[0]} and {tried[1].name} "
        f"(set HARNESS_DATA_DIR or task.data_dir to the folder holding glue/{glue_dir}/)"
    )


def _lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        for line in handle:
            yield line.rstrip("\r\n")


def read_tsv(path: Path, spec: dict, labels: list[str] | None) -> dict[str, list]:
    """Read one GLUE split into columns `text_a`, `text_b` (None for single-sentence tasks) and `label`.

    `spec` is the task's `tsv` block: `header` (bool), `text` (column names, or indices when there is no header),
    `label` (name or index), `num_columns` (headerless files). `labels` maps label strings to ids in order; None means
    regression (float labels, STS-B).
    """
    rows = _lines(path)
    if spec["header"]:
        try:
            header = next(rows).split("\t")
        except StopIteration:
            raise DataError(f"{path}: empty file (expected a header line)") from None
        missing = [c for c in [*spec["text"], spec["label"]] if c not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {missing}; found {header}")
        n_cols = len(header)
        text_idx = [header.index(c) for c in spec["text"]]
        label_idx = header.index(spec["label"])
        first_line = 2
    else:
        n_cols = int(spec["num_columns"])
        text_idx = [int(c) for c in spec["text"]]
        label_idx = int(spec["label"])
        first_line = 1
    label_ids = {name: i for i, name in enumerate(labels)} if labels is not None else None
    out = {"text_a": [], "text_b": [], "label": []}
    for lineno, line in enumerate(rows, start=first_line):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_cols:
            raise DataError(f"{path}:{lineno}: malformed line: expected {n_cols} tab-separated fields, got {len(fields)}")
        raw = fields[label_idx].strip()
        if label_ids is None:
            try:
                label = float(raw)
            except ValueError:
                raise DataError(f"{path}:{lineno}: label {raw!r} is not a number") from None
        elif raw in label_ids:
            label = label_ids[raw]
        else:
            raise DataError(f"{path}:{lineno}: unknown label {raw!r}; valid labels: {list(label_ids)}")
        out["text_a"].append(fields[text_idx[0]])
        out["text_b"].append(fields[text_idx[1]] if len(text_idx) > 1 else None)
        out["label"].append(label)
    if not out["label"]:
        raise DataError(f"{path}: split is empty (no data lines)")
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_local(task: dict, data_dir: str | Path, split: str) -> tuple[dict[str, list], dict]:
    path = find_split_file(data_dir, task["glue_dir"], split)
    columns = read_tsv(path, task["tsv"], task["labels"])
    return columns, {"path": str(path), "sha256": sha256_of(path)}


def load_hub(task: dict, split: str) -> tuple[dict[str, list], dict]:
    """The same columns from the Hugging Face hub (needs internet)."""
    import datasets

    hub = task["hub"]
    try:
        ds = datasets.load_dataset(hub["path"], hub["name"], split=hub["splits"][split])
    except Exception as exc:  # offline machines land here; say how to use local files instead
        raise DataError(
            f"could not load {hub['path']}/{hub['name']} split {hub['splits'][split]!r} from the hub ({type(exc).__name__}); "
            "set HARNESS_DATA_DIR to a local folder in GLUE's tsv layout"
        ) from exc
    text = hub["text"]
    columns = {
        "text_a": list(ds[text[0]]),
        "text_b": list(ds[text[1]]) if len(text) > 1 else [None] * len(ds),
        "label": [float(x) for x in ds["label"]] if task["labels"] is None else list(ds["label"]),
    }
    if not columns["label"]:
        raise DataError(f"{hub['path']}/{hub['name']} split {split!r} is empty")
    return columns, {"hub": f"{hub['path']}/{hub['name']}", "revision": getattr(ds.info, "version", None) and str(ds.info.version), "fingerprint": ds._fingerprint}


def load_split(task: dict, split: str) -> tuple[dict[str, list], dict]:
    if task.get("data_dir"):
        return load_local(task, task["data_dir"], split)
    return load_hub(task, split)
