"""A key-value cache of costly pure results in one SQLite file under ``~/.cache/tracebank``.

Used for verdicts (code execution, math-verify: :mod:`tracebank.verdict_cache`) and text embeddings
(:mod:`tracebank.filters.diversity.embeddings`). A key must hash every input the value depends on; deleting
the file only costs recomputation. Each cache has an environment variable that moves its file, or
turns it off with ``off``. A cache the disk refuses to write is reported once and skipped: the
run it serves goes on and loses nothing but the speed-up next time.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from tracebank.sources import cache_dir

CHUNK = 500  # keys per SELECT (SQLite's variable limit is well above)


class DiskCache:
    def __init__(self, env: str, filename: str, table: str):
        self.env, self.filename, self.table = env, filename, table
        self._lock = threading.Lock()
        self._warned = False

    def location(self) -> Path | None:
        value = os.environ.get(self.env)
        if value == "off":
            return None
        return Path(value) if value else cache_dir() / self.filename

    def _connect(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        return con

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored values of the keys that have one."""
        path, keys = self.location(), list(dict.fromkeys(keys))
        if path is None or not keys or not path.exists():
            return {}
        found: dict[str, bytes] = {}
        with self._lock:
            try:
                con = self._connect(path)
                try:
                    for start in range(0, len(keys), CHUNK):
                        chunk = keys[start : start + CHUNK]
                        marks = ",".join("?" * len(chunk))
                        sql = f"SELECT key, value FROM {self.table} WHERE key IN ({marks})"
                        found.update(con.execute(sql, chunk))
                finally:
                    con.close()
            except (sqlite3.Error, OSError) as error:
                self._warn("read", path, error)
                return {}
        return found

    def put_many(self, items: dict[str, bytes]) -> None:
        path = self.location()
        if path is None or not items:
            return
        with self._lock:
            try:
                con = self._connect(path)
                try:
                    with con:
                        con.executemany(
                            f"INSERT OR REPLACE INTO {self.table} (key, value) VALUES (?, ?)", items.items()
                        )
                finally:
                    con.close()
            except (sqlite3.Error, OSError) as error:
                self._warn("write", path, error)

    def _warn(self, action: str, path: Path, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            print(
                f"warning: cannot {action} the cache {path} ({error}); going on without it "
                f"(set {self.env}=off to silence this, or point it at a writable file)",
                file=sys.stderr,
            )
