"""Read rows from JSONL, JSON, Parquet or an HF dataset directory, each with its row number.

Every reader yields ``(row_number, row, split)``: the 1-based line number for JSONL (so errors can
point at it), the 1-based row index otherwise, and the split name when the source has splits.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from tracebank.errors import TracebankError

Row = tuple[int, dict[str, Any], str | None]


def read_rows(path: str | Path, split: str | None = None) -> Iterator[Row]:
    """Rows of a file or dataset directory; raises TracebankError on anything unreadable."""
    path = Path(path)
    if not path.exists():
        raise TracebankError(f"no such file or directory: {path}")
    name = path.name.lower()
    if path.is_dir():
        return _read_directory(path, split)
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return _read_jsonl(path)
    if name.endswith(".json"):
        return _read_json(path)
    if name.endswith(".parquet"):
        return _read_parquet(path)
    raise TracebankError(
        f"{path}: unknown format; expected .jsonl, .jsonl.gz, .json, .parquet or an HF dataset directory"
    )


def _read_jsonl(path: Path) -> Iterator[Row]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise TracebankError(f"{path}:{number}: malformed JSON ({error.args[0]})") from None
            if not isinstance(row, dict):
                raise TracebankError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row, None


def _read_json(path: Path) -> Iterator[Row]:
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
