"""Read rows from JSONL, JSON, Parquet or an HF dataset directory, each with its row number.

Every reader yields ``(row_number, row, split)``: the 1-based line number for JSONL (so errors can
point at it), the 1-based row index otherwise, and the split name when the source has splits.
A JSONL line (or a whole .json file) longer than ``max_line_bytes`` is an error, found having
read only that many bytes: a hostile or broken file cannot make a reader hold more in memory.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow.parquet as pq

from tracebank.errors import TracebankError

Row = tuple[int, dict[str, Any], str | None]
DEFAULT_MAX_LINE_MB = 64.0  # far above any real record (a 32k-token trace is about 128 KB)
_PIECE = 1 << 20  # a long line is read this much at a time


def read_rows(
    path: str | Path, split: str | None = None, max_line_bytes: int = int(DEFAULT_MAX_LINE_MB * 2**20)
) -> Iterator[Row]:
    """Rows of a file or dataset directory; raises TracebankError on anything unreadable."""
    path = Path(path)
    if not path.exists():
        raise TracebankError(f"no such file or directory: {path}")
    name = path.name.lower()
    if path.is_dir():
        return _read_directory(path, split)
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return _read_jsonl(path, max_line_bytes)
    if name.endswith(".json"):
        return _read_json(path, max_line_bytes)
    if name.endswith(".parquet"):
        return _read_parquet(path)
    raise TracebankError(
        f"{path}: unknown format; expected .jsonl, .jsonl.gz, .json, .parquet or an HF dataset directory"
    )


def _too_long(path: Path, what: str, max_line_bytes: int) -> TracebankError:
    return TracebankError(
        f"{path}{what} is longer than {max_line_bytes / 2**20:g} MiB; if such records are meant, "
        "raise the limit (tracebank import --max-line-mb)"
    )


def _lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[bytes | bytearray | None]:
    """Each line; ``None`` for one longer than the limit, having read only a piece past it.

    A line is read in pieces into one growing buffer, so the peak is about the limit (one copy).
    """
    while piece := stream.readline(_PIECE):
        line: bytes | bytearray = piece  # the common case: the whole line in one piece
        if not piece.endswith(b"\n"):
            line = bytearray(piece)
            while not line.endswith(b"\n") and len(line) <= max_line_bytes and (piece := stream.readline(_PIECE)):
                line += piece
        if len(line) - line.endswith(b"\n") > max_line_bytes:
            del line, piece  # free them before the caller raises (the error keeps this frame alive)
            yield None
            return
        yield line


def _read_jsonl(path: Path, max_line_bytes: int) -> Iterator[Row]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        for number, line in enumerate(_lines(stream, max_line_bytes), start=1):
            if line is None:
                raise _too_long(path, f":{number}: the line", max_line_bytes)
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise TracebankError(f"{path}:{number}: malformed JSON ({error.args[0]})") from None
            if not isinstance(row, dict):
                raise TracebankError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row, None


def _read_json(path: Path, max_line_bytes: int) -> Iterator[Row]:
    if path.stat().st_size > max_line_bytes:
        raise _too_long(path, " (a .json file, read whole; .jsonl is read a line at a time)", max_line_bytes)
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise TracebankError(f"{path}: malformed JSON ({error.args[0]})") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise TracebankError(f"{path}: expected a JSON array of objects")
    for number, row in enumerate(data, start=1):
        yield number, row, None


def _read_parquet(path: Path, split: str | None = None) -> Iterator[Row]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise TracebankError(f"{path}: not a readable Parquet file ({error})") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=8192):
        for row in batch.to_pylist():
            number += 1
            yield number, row, split


def _read_directory(path: Path, split: str | None) -> Iterator[Row]:
    """An HF dataset saved with ``save_to_disk`` (Dataset or DatasetDict)."""
    if not ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        raise TracebankError(f"{path}: a directory, but not an HF dataset saved with save_to_disk")
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        names = [split] if split else list(loaded)
        unknown = [n for n in names if n not in loaded]
        if unknown:
            raise TracebankError(f"{path}: no split {unknown[0]!r}; splits: {', '.join(loaded)}")
        parts = [(n, loaded[n]) for n in names]
    else:
        parts = [(split, loaded)]
    for split_name, part in parts:
        for number, row in enumerate(part, start=1):
            yield number, row, split_name


MISSING = object()  # what field_value() returns for a path the row does not have (None is a value)


def field_value(row: Mapping[str, Any], path: str) -> Any:
    """A row's field by name, or by dotted path into nested objects; MISSING when absent."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def as_text(value: Any) -> str | None:
    """A field's value as text: strings as they are, objects and lists as JSON, None (or MISSING) as None."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)
