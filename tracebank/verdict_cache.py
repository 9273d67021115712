"""A cache of costly verdicts (code execution, math-verify), keyed by a hash of their inputs.

``tracebank score`` re-scores every trace on every run (set-level filters need the whole
dataset), so without this a rerun would execute every code trace again. A verdict is a pure
function of (checker version, answer, reference, limits): the key hashes exactly those, never
code; bumping a checker's version string invalidates its entries. Verdicts that depend on the
machine's load (timeouts, crashes) are never stored.

The cache is one SQLite file: ``$TRACEBANK_VERDICT_CACHE``, else ``~/.cache/tracebank/verdicts.sqlite``.
Set ``TRACEBANK_VERDICT_CACHE=off`` to disable it. Deleting the file only costs recomputation.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from tracebank.disk_cache import DiskCache

ENV = "TRACEBANK_VERDICT_CACHE"
TRANSIENT = ("timeout", "crashed")  # load-dependent: recomputed every time
CACHE = DiskCache(ENV, "verdicts.sqlite", "verdicts")


def location() -> Path | None:
    return CACHE.location()


def get_many(keys: Iterable[str]) -> dict[str, dict]:
    """Stored verdicts (as dicts) for the keys that have one."""
    return {key: orjson.loads(value) for key, value in CACHE.get_many(keys).items()}


def put_many(items: dict[str, dict]) -> None:
    """Store verdicts (dicts with a ``reason``), skipping transient ones."""
    CACHE.put_many({key: orjson.dumps(value) for key, value in items.items() if value.get("reason") not in TRANSIENT})
