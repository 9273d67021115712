"""The request cache: one SQLite row per finished request, keyed by a hash of the request data.

A response is committed (WAL) before it counts as done, so after a crash or ``kill -9`` a rerun
re-sends only the requests that had not finished; editing one parameter changes only the keys it
touches. The cache lives beside the catalog and nothing in tracebank ever deletes it.

Builds that overlap (two runs of one dataset, or of datasets that share requests) must not both
pay for one request: before sending, a build *claims* the keys it will send (``claim``); a key
another live build holds is left to that build, and read from the cache once it is there. Claims
are per process: a build that dies leaves claims that the next build takes over (``alive``), and
``release`` drops a build's claims when it ends.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tracebank.builders.base import Response
from tracebank.errors import cannot_write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL
)
"""
_CHUNK = 500  # keys per statement: under SQLite's bound-parameter limit
# SQLite's primary result codes for a write the disk refused: PERM, READONLY, IOERR, FULL, CANTOPEN.
_DISK_ERRORS = {3, 8, 10, 13, 14}


def alive(pid: int) -> bool:
    """Whether process ``pid`` (on this machine) still runs."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RequestCache:
    def __init__(self, path: Path):
        self.path = path
        with self._disk():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed row survives kill -9
            self.db.execute(_SCHEMA)
            self.db.execute(_CLAIMS)

    @contextlib.contextmanager
    def _disk(self) -> Iterator[None]:
        """A write the disk refuses (full, read-only) is one clear error, not a traceback."""
        try:
            yield
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", 0) & 0xFF not in _DISK_ERRORS:
                raise
            raise cannot_write(f"the request cache {self.path}", error) from None
        except OSError as error:
            raise cannot_write(f"the request cache {self.path}", error) from None

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[None]:
        """All of the block's writes are durable when it ends, or none (COMMIT is where a full disk shows)."""
        with self._disk():
            self.db.execute(begin)
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self.db.execute("ROLLBACK")
                raise

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(keys)
        found: dict[str, Response] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, payload in self.db.execute(f"SELECT key, payload FROM responses WHERE key IN ({marks})", chunk):
                found[key] = Response.from_json(payload)
        return found

    def count_since(self, since: float) -> int:
        """How many responses were cached at or after ``since`` (a ``time.time()``)."""
        return int(self.db.execute("SELECT count(*) FROM responses WHERE created_at >= ?", [since]).fetchone()[0])

    def keys_since(self, keys: Iterable[str], since: float) -> set[str]:
        """Those of ``keys`` cached at or after ``since``: what a build's own workers have finished."""
        keys, found = list(keys), set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            sql = f"SELECT key FROM responses WHERE created_at >= ? AND key IN ({','.join('?' * len(chunk))})"
            found.update(key for (key,) in self.db.execute(sql, [since, *chunk]))
        return found

    def put(self, response: Response) -> None:
        self.put_many([response])

    def put_many(self, responses: Sequence[Response]) -> None:
        """Store responses in one transaction: all of them are durable when this returns, or none."""
        now = time.time()
        rows = [(r.key, r.to_json(), now) for r in responses]
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO responses (key, payload, created_at) VALUES (?, ?, ?)", rows)

    def claim(self, keys: Iterable[str], owner: str) -> dict[str, str]:
        """Claim ``keys`` for ``owner`` (this process); returns {key: holder} of those another live build holds.

        One transaction: of two builds claiming at once, each key goes to exactly one of them.
        """
        keys, now, pid = list(keys), time.time(), os.getpid()
        with self._transaction("BEGIN IMMEDIATE"):
            held = self.holders(keys, owner)
            for start in range(0, len(keys), _CHUNK):
                self.db.executemany(
                    "INSERT OR REPLACE INTO claims (key, owner, pid, claimed_at) VALUES (?, ?, ?, ?)",
                    [(key, owner, pid, now) for key in keys[start : start + _CHUNK] if key not in held],
                )
        return held

    def holders(self, keys: Iterable[str], owner: str) -> dict[str, str]:
        """{key: holder} of ``keys`` that a live build other than ``owner`` has claimed."""
        keys, held = list(keys), {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, owner, pid FROM claims WHERE key IN ({marks})", chunk).fetchall()
            held.update({key: holder for key, holder, pid in rows if holder != owner and alive(pid)})
        return held

    def release(self, owner: str) -> None:
        """Drop every claim of ``owner``, if the disk lets it: claims of an ended build are taken over anyway
        (``alive``), and a failure here must not hide the error that ended the build."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("DELETE FROM claims WHERE owner = ?", [owner])

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM responses").fetchone()[0])
