"""Content hashes: ids and cache keys are hashes of data, never of code (DESIGN.md)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import xxhash


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace, so equal data always gives equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def digest(*parts: Any) -> str:
    """xxh128 hex digest of the canonical JSON of ``parts``."""
    return xxhash.xxh3_128_hexdigest(canonical_json(list(parts)))


def prompt_id(dataset: str, messages: list[dict[str, str]]) -> str:
    """A prompt's id: the same question in the same dataset always maps to the same row."""
    return digest("prompt", dataset, [[m["role"], m["content"]] for m in messages])


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], sample_idx: int) -> str:
    """The request cache key: ``xxh128(canonical_json(model, messages, params) + sample_idx)``."""
    payload = canonical_json({"model": model, "messages": messages, "params": params})
    return xxhash.xxh3_128_hexdigest(payload + b"#" + str(sample_idx).encode())


def unit_interval(salt: str, key: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``key``: used to assign splits by prompt.

    The first 8 bytes of MD5(salt NUL key) as a little-endian integer over 2**64: exactly DuckDB's
    ``md5_number_upper(salt || chr(0) || key) / 2**64``, so SQL and Python assign the same split.
    """
    head = hashlib.md5(f"{salt}\x00{key}".encode()).digest()[:8]
    return int.from_bytes(head, "little") / 2**64


def unit_interval_sql(salt_literal: str, key_column: str) -> str:
    """The SQL expression equal to :func:`unit_interval` (salt given as a SQL literal)."""
    return f"(md5_number_upper({salt_literal} || chr(0) || {key_column}) / 18446744073709551616.0)"
