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

import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import orjson

from tracebank.sources import cache_dir

ENV = "TRACEBANK_VERDICT_CACHE"
TRANSIENT = ("timeout", "crashed")  # load-dependent: recomputed every time
_lock = threading.Lock()


def location() -> Path | None:
    value = os.environ.get(ENV)
    if value == "off":
        return None
    return Path(value) if value else cache_dir() / "verdicts.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    return con


def get_many(keys: Iterable[str]) -> dict[str, dict]:
    """Stored verdicts (as dicts) for the keys that have one."""
    path, keys = location(), list(dict.fromkeys(keys))
    if path is None or not keys or not path.exists():
        return {}
    found: dict[str, dict] = {}
    with _lock:
        con = _connect(path)
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in con.execute(f"SELECT key, value FROM verdicts WHERE key IN ({marks})", chunk):
                    found[key] = orjson.loads(value)
        finally:
            con.close()
    return found


def put_many(items: dict[str, dict]) -> None:
    """Store verdicts (dicts with a ``reason``), skipping transient ones."""
    path = location()
    rows = [(key, orjson.dumps(value)) for key, value in items.items() if value.get("reason") not in TRANSIENT]
    if path is None or not rows:
        return
    with _lock:
        con = _connect(path)
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO verdicts (key, value) VALUES (?, ?)", rows)
        finally:
            con.close()
