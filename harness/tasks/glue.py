"""GLUE (Wang et al. 2018), the dataset module of every `dataset: glue` task: the original GLUE tsv layout (local
folder) or the Hugging Face hub (`nyu-mll/glue`). A new GLUE-format task is one yaml: its `glue_dir`, its `tsv` layout
(header, text columns, label column), its `labels` and its `hub` copy; scoring is harness/metrics/glue.py.

GLUE's tsv files are tab-separated with no quoting at all (a `"` is an ordinary character), so they are split on tabs
rather than read with the csv module's default dialect. MRPC's header starts with a UTF-8 BOM (GLUE's download script
carries it over), hence `utf-8-sig`.
"""
from __future__ import annotations

from pathlib import Path

from harness.errors import DataError
from harness.io import sha256_file, text_lines
from harness.metrics import glue as glue_metrics

OPTIONS = ("glue_dir", "tsv", "hub")   # the task yaml's keys this module reads
METRICS = tuple(glue_metrics.METRICS)    # the metrics a GLUE task may name


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


def read_tsv(path: Path, spec: dict, labels: list[str] | None) -> dict[str, list]:
    """Read one GLUE split into columns `text_a`, `text_b` (None for single-sentence tasks) and `label`.

    `spec` is the task's `tsv` block: `header` (bool), `text` (column names, or indices when there is no header),
    `label` (name or index), `num_columns` (headerless files). `labels` maps label strings to ids in order; None means
    regression (float labels, STS-B).
    """
    rows = text_lines(path)
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


def load_local(task, data_dir: str | Path, split: str) -> tuple[dict[str, list], dict]:
    path = find_split_file(data_dir, task.options["glue_dir"], split)
    return read_tsv(path, task.options["tsv"], task.labels), _file_source(path)


def _file_source(path: Path) -> dict:
    return {"path": str(path), "sha256": sha256_file(path)}


def load_hub(task, split: str) -> tuple[dict[str, list], dict]:
    """The same columns from the Hugging Face hub (needs internet)."""
    import datasets

    hub = task.options["hub"]
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
        "label": [float(x) for x in ds["label"]] if task.labels is None else list(ds["label"]),
    }
    if not columns["label"]:
        raise DataError(f"{hub['path']}/{hub['name']} split {split!r} is empty")
    revision = getattr(ds.info, "version", None) and str(ds.info.version)
    return columns, {"hub": f"{hub['path']}/{hub['name']}", "revision": revision, "fingerprint": ds._fingerprint}


def read(task, split: str) -> tuple[dict[str, list], dict]:
    """One split as columns `text_a`, `text_b`, `label` (label ids, or floats for regression) and its provenance
    (the file's sha256, or the hub dataset's fingerprint)."""
    if task.data_dir:
        return load_local(task, task.data_dir, split)
    return load_hub(task, split)


def source(task, split: str) -> dict | None:
    """A local split's provenance, as `read` gives it, without parsing the file (its path and sha256): a pipeline
    whose tokenised copy of the file is cached under that sha256 need not read it again. None for hub data."""
    if not task.data_dir:
        return None
    return _file_source(find_split_file(task.data_dir, task.options["glue_dir"], split))


def check_data(task) -> list[str]:
    """Start-up check, before any model is loaded: every split's file is present and has a data row (malformed rows
    are found when the pipeline reads the file, still before the model loads). Hub data is checked when downloaded."""
    if not task.data_dir:
        return []
    problems = []
    for split in [task.splits["train"], *task.splits["eval"]]:
        try:
            path = find_split_file(task.data_dir, task.options["glue_dir"], split)
        except DataError as exc:
            problems.append(str(exc))
            if not (Path(task.data_dir) / "glue" / task.options["glue_dir"]).is_dir():
                break  # the task's folder is missing: one problem, not one per split
            continue
        if not _has_rows(path, task.options["tsv"]["header"]):
            problems.append(f"{path}: split {split!r} has no data rows (task.data_dir={task.data_dir})")
    return problems


def _has_rows(path: Path, header: bool) -> bool:
    """Whether a tsv holds at least one non-blank line after its header: reads two lines, not the file."""
    lines = text_lines(path)
    try:
        seen = sum(1 for _, _line in zip(range(2), (line for line in lines if line.strip())))
    finally:
        lines.close()
    return seen >= (2 if header else 1)
