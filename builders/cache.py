"""The request cache: one SQLite row per finished request, keyed by a hash of the request data.

A response is committed (WAL) before it counts as done, so after a crash or ``kill -9`` a rerun
re-sends only the requests that had not finished; editing one parameter changes only the keys it
touches. The cache lives beside the catalog and nothing in tracebank ever deletes it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tracebank.builders.base import Response

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""


class RequestCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed row survives kill -9
        self.db.execute(_SCHEMA)

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(keys)
        found: dict[str, Response] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, payload in self.db.execute(f"SELECT key, payload FROM responses WHERE key IN ({marks})", chunk):
                found[key] = Response.from_json(payload)
        return found

    def put(self, response: Response) -> None:
        self.put_many([response])

    def put_many(self, responses: Sequence[Response]) -> None:
        """Store responses in one transaction: all of them are durable when this returns, or none."""
        now = time.time()
        rows = [(r.key, r.to_json(), now) for r in responses]
        self.db.execute("BEGIN")
        try:
            self.db.executemany("INSERT OR REPLACE INTO responses (key, payload, created_at) VALUES (?, ?, ?)", rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM responses").fetchone()[0])
