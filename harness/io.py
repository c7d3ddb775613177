"""Small file helpers used across the harness, written once: atomic writes, file checksums, the data folder."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

# `../shared/data` beside the repository: the Makefile's default for HARNESS_DATA_DIR.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """`write(tmp_path)` into a temporary file beside `path`, fsync, then rename over `path`: a reader (or a rerun
    after a kill) sees the old file or the new one, never a part. The temporary file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(obj, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")

    write_atomic(path, write)


def read_json(path: str | Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_dir(explicit: str | Path | None = None) -> Path:
    """Where local data lives: `explicit` (task.data_dir), else $HARNESS_DATA_DIR, else ../shared/data."""
    env = os.environ.get("HARNESS_DATA_DIR")
    return Path(explicit) if explicit is not None else Path(env) if env else DEFAULT_DATA_DIR


def text_lines(path: str | Path):
    """The lines of a UTF-8 text file (a leading BOM dropped), plain or gzip-compressed (`.gz`), without their line
    ends. A byte that is not UTF-8, or a corrupt or truncated gzip stream, is a DataError naming the file (and line)."""
    import gzip
    import zlib

    from harness.errors import DataError

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                text = raw.decode("utf-8")
                yield (text.removeprefix("\ufeff") if lineno == 1 else text).rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at column "
                        f"{exc.start + 1}); data files must be UTF-8") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file after line {lineno} ({exc})") from None
