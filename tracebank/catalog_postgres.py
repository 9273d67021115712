"""DuckLake catalogs whose metadata lives in PostgreSQL: the home's config file, the data path, the write lock.

The catalog home keeps a small JSON file naming the PostgreSQL database (a libpq connection string
without any password: passwords come from PGPASSWORD, ~/.pgpass or libpq's other variables, never
from a file tracebank writes) and where the Parquet data lives (an absolute local directory, or a
bucket such as ``s3://bucket/prefix/``). Writers may run on different machines, so they take a
PostgreSQL advisory lock rather than a local file lock.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import duckdb
import orjson

from tracebank.errors import TracebankError

CONFIG_FILE = "catalog.postgres.json"
PREFIX = "postgres:"
# Object stores reached through DuckDB's httpfs extension (any S3-compatible store via AWS_ENDPOINT_URL).
REMOTE_SCHEMES = ("s3",)
# One advisory-lock key for every tracebank writer of a database (a fixed 63-bit number, "tracebnk").
WRITE_LOCK_KEY = int.from_bytes(b"tracebnk", "big") >> 1
_SECRET_KEYS = ("password", "sslpassword")
_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)\s*")
EXAMPLE = "dbname=tracebank host=db.example.org port=5432 user=me"


def check_dsn(text: str) -> str:
    """The libpq connection string of ``text`` (``postgres:`` prefix dropped), refused if it holds a password."""
    dsn = text.strip()
    if not dsn.startswith(("postgres://", "postgresql://")):
        dsn = dsn.removeprefix(PREFIX).strip()  # DuckLake's own spelling: postgres:dbname=...
    if not dsn:
        raise TracebankError(f"--metadata needs a libpq connection string, e.g. '{EXAMPLE}'")
    if dsn.startswith(("postgres://", "postgresql://")):
        url = urlsplit(dsn)
        keys = set(parse_qs(url.query)) | ({"password"} if url.password is not None else set())
    else:
        keys, end = set(), 0
        for match in _PAIR.finditer(dsn):
            if match.start() != end:
                break
            keys.add(match.group(1).lower())
            end = match.end()
        if end != len(dsn):
            raise TracebankError(f"cannot read the connection string {dsn!r}: write key=value pairs, e.g. '{EXAMPLE}'")
    if keys & set(_SECRET_KEYS):
        raise TracebankError(
            "the connection string holds a password, which tracebank would write into the catalog home: "
            "leave it out and set PGPASSWORD or add it to ~/.pgpass"
        )
    return dsn


def check_data_path(text: str) -> str:
    """An absolute local directory or an object-store URL, ending with a separator as DuckLake records it."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme:
        if scheme not in REMOTE_SCHEMES or not text.split("://", 1)[1].strip("/"):
            raise TracebankError(
                f"--data-path {text!r}: use a local directory or a bucket URL "
                f"({', '.join(s + '://bucket/prefix' for s in REMOTE_SCHEMES)})"
            )
        return text.rstrip("/") + "/"
    return str(Path(text).expanduser().absolute()) + os.sep


def is_remote(data_path: str) -> bool:
    return "://" in data_path


@dataclass(frozen=True)
class PostgresCatalog:
    """What the catalog home records about a PostgreSQL catalog (never a password)."""

    dsn: str
    data_path: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "dsn", check_dsn(self.dsn))
        object.__setattr__(self, "data_path", check_data_path(self.data_path))

    @classmethod
    def load(cls, home: Path) -> PostgresCatalog:
        path = home / CONFIG_FILE
        try:
            fields = orjson.loads(path.read_bytes())
            return cls(fields["metadata"], fields["data_path"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
            raise TracebankError(
                f"cannot read {path}: {error}; run `tracebank init --backend postgres` again"
            ) from None

    def save(self, home: Path) -> None:
        """Write the config file atomically (temp file, then rename)."""
        body = {"backend": "postgres", "metadata": self.dsn, "data_path": self.data_path}
        staged = home / f".{CONFIG_FILE}.{os.getpid()}"
        staged.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        os.replace(staged, home / CONFIG_FILE)


def object_store_secret(env: Mapping[str, str]) -> str:
    """The options of a DuckDB S3 secret from the standard AWS variables in ``env``; empty when none are set."""
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return ""
    options = ["TYPE s3", f"KEY_ID {_quote(key_id)}", f"SECRET {_quote(secret)}"]
    if token := env.get("AWS_SESSION_TOKEN"):
        options.append(f"SESSION_TOKEN {_quote(token)}")
    if region := env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        options.append(f"REGION {_quote(region)}")
    if endpoint := env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"):
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        # S3-compatible stores (MinIO, R2, Ceph) are addressed by path: http://host:port/bucket/key.
        options += [f"ENDPOINT {_quote(url.netloc)}", f"USE_SSL {str(url.scheme == 'https').lower()}"]
        options.append("URL_STYLE 'path'")
    return ", ".join(options)


def object_store_error(data_path: str, error: duckdb.Error) -> TracebankError:
    """One line for a bucket that refused a read or write: nothing was committed; what to check."""
    reason = " ".join(str(error).split())
    return TracebankError(
        f"cannot reach the catalog's data at {data_path}: {reason}; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
        "and AWS_REGION (and AWS_ENDPOINT_URL for an S3-compatible store), then run the same command again: "
        "nothing was committed"
    )


def stored_data_path(con: duckdb.DuckDBPyConnection, dsn: str) -> str | None:
    """The data path a DuckLake catalog already in this database records, or None if it holds none yet.

    ``con`` has the postgres extension loaded; connection failures surface as :func:`explain` errors.
    """
    try:
        con.execute(f"ATTACH {_quote(dsn)} AS tracebank_probe (TYPE postgres, READ_ONLY)")
        found = "SELECT to_regclass('ducklake_metadata') IS NOT NULL AS found"
        if not con.execute("SELECT found FROM postgres_query('tracebank_probe', ?)", [found]).fetchone()[0]:
            return None
        query = "SELECT value FROM ducklake_metadata WHERE key = 'data_path'"
        row = con.execute("SELECT value FROM postgres_query('tracebank_probe', ?)", [query]).fetchone()
    except duckdb.Error as error:
        raise explain(dsn, error) from None
    return row[0] if row else None


def explain(dsn: str, error: duckdb.Error) -> TracebankError:
    """One actionable line for a failure to reach or use the PostgreSQL database."""
    text = " ".join(str(error).split())
    reason = re.split(r"Unable to connect to Postgres at \".*?\": ", text)[-1]
    reason = reason.split(" failed: ")[-1]
    if "does not exist" in reason and "database" in reason:
        return TracebankError(f"{reason} ({dsn}): create it first (createdb, or CREATE DATABASE) or fix dbname=")
    if "password" in reason or "authentication" in reason:
        return TracebankError(
            f"PostgreSQL refused the login ({dsn}): {reason}; set PGPASSWORD or add a ~/.pgpass line "
            "(tracebank never stores passwords)"
        )
    if "Unable to connect" in text:
        return TracebankError(f"cannot reach PostgreSQL ({dsn}): {reason}; start the server, or check host= and port=")
    return TracebankError(f"the PostgreSQL catalog ({dsn}) failed: {reason}")


@contextmanager
def write_lock(con: duckdb.DuckDBPyConnection, dsn: str, timeout: float, wait_hint: str) -> Iterator[None]:
    """Hold tracebank's advisory lock in PostgreSQL: one writer at a time, on any machine.

    ``con`` is a fresh connection with the postgres extension loaded, given over to the lock: a
    transaction-scoped lock lives as long as its PostgreSQL transaction, which ends when ``con``
    closes (or this process dies), so a crashed writer never leaves the catalog locked.
    """
    me = f"tracebank writer pid {os.getpid()} on {socket.gethostname()}"
    try:
        con.execute(f"ATTACH {_quote(_named(dsn, me))} AS tracebank_lock (TYPE postgres)")
        con.execute("BEGIN")  # pins one PostgreSQL connection and transaction until con closes
        deadline = time.monotonic() + timeout
        while not _try_lock(con):
            if time.monotonic() >= deadline:
                raise TracebankError(
                    f"{_holder(con)} holds the write lock of the PostgreSQL catalog ({dsn}); "
                    f"waited {timeout:.0f}s ({wait_hint} sets how long)"
                )
            time.sleep(0.2)
    except duckdb.Error as error:
        con.close()
        raise explain(dsn, error) from None
    except BaseException:
        con.close()
        raise
    try:
        yield
    finally:
        con.close()  # ends the transaction, which releases the lock


def _try_lock(con: duckdb.DuckDBPyConnection) -> bool:
    query = f"SELECT pg_try_advisory_xact_lock({WRITE_LOCK_KEY}) AS got"
    return bool(con.execute("SELECT got FROM postgres_query('tracebank_lock', ?)", [query]).fetchone()[0])


def _holder(con: duckdb.DuckDBPyConnection) -> str:
    """Who holds the lock, as its PostgreSQL session names itself (a tracebank writer's pid and host)."""
    query = (
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        f"WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {WRITE_LOCK_KEY >> 32} "
        f"AND l.objid = {WRITE_LOCK_KEY & 0xFFFFFFFF}"
    )
    row = con.execute("SELECT * FROM postgres_query('tracebank_lock', ?)", [query]).fetchone()
    return row[0] if row and row[0] else "another PostgreSQL session"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _named(dsn: str, name: str) -> str:
    """``dsn`` with its sessions named ``name`` in pg_stat_activity (so a waiting writer can say who holds the lock)."""
    if dsn.startswith(("postgres://", "postgresql://")):
        return f"{dsn}{'&' if '?' in dsn else '?'}application_name={quote(name)}"
    return f"{dsn} application_name='{name}'"  # name holds no quote or backslash: pid and host name
