"""The DuckLake catalog: Parquet data files plus a DuckDB, SQLite or PostgreSQL metadata database.

Readers attach read-only (optionally at an earlier snapshot) and get polars DataFrames back.
Writers take a file lock, write every table of a stage in one DuckLake transaction and commit
it with a message: a stage either lands as one snapshot or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa

from tracebank import catalog_postgres, records
from tracebank.catalog_backends import (
    ALIAS,
    CATALOG_ENV,
    DEFAULT_HOME,
    LOCK_TIMEOUT_ENV,
    METADATA_FILES,
    CatalogLocation,
    attach,
    connection_with_extensions,
    locate,
    lock_timeout,
    refuse_system_path,
    release,
    warm_up,
)
from tracebank.errors import TracebankError, cannot_write
from tracebank.user_sql import SqlGuard

# The catalog's API; where a catalog lives (catalog_backends) is re-exported, so callers name this module only.
__all__ = [
    "ALIAS", "CATALOG_ENV", "DEFAULT_HOME", "LOCK_TIMEOUT_ENV", "METADATA_FILES", "VIEWS", "Catalog", "CatalogLocation",
    "Writer", "ensure_writable", "init", "locate", "lock_timeout", "refuse_system_path", "warm_up", "writing",
]  # fmt: skip

# Derived views every reader gets; the tables themselves are queried by name (USE lake).
VIEWS = {
    "curated": """
        SELECT d.dataset, d.version, d.split, d.rule, d.reason, d.trace_id, d.prompt_id,
               p.task, p.messages, p.reference, t.policy, t.model, t.backend, t.strategy,
               t.sample_idx, t.params, t.rationale, t.answer, t.finish_reason,
               t.prompt_tokens, t.completion_tokens, t.cost_usd
        FROM lake.decisions d
        JOIN lake.traces t ON t.trace_id = d.trace_id
        JOIN lake.prompts p ON p.prompt_id = d.prompt_id
        WHERE d.keep
    """,
    # One row per trace the decontam filter flagged: what it matched, where, and the prompt's split hint.
    "contamination": """
        SELECT s.trace_id, s.dataset, t.prompt_id, p.split_hint,
               max(s.detail) FILTER (WHERE s.metric = 'benchmark') AS benchmark,
               max(s.detail) FILTER (WHERE s.metric = 'item_id') AS item_id,
               max(s.detail) FILTER (WHERE s.metric = 'item_field') AS item_field,
               max(s.detail) FILTER (WHERE s.metric = 'field') AS field,
               CAST(max(s.value) FILTER (WHERE s.metric = 'span_start') AS BIGINT) AS span_start,
               CAST(max(s.value) FILTER (WHERE s.metric = 'span_end') AS BIGINT) AS span_end,
               max(s.detail) FILTER (WHERE s.metric = 'matched_text') AS matched_text,
               CAST(max(s.value) FILTER (WHERE s.metric = 'matched_ngrams') AS BIGINT) AS matched_ngrams,
               max(s.value) FILTER (WHERE s.metric = 'overlap') AS overlap,
               max(s.detail) FILTER (WHERE s.metric = 'benchmarks_checked') AS benchmarks_checked,
               max(s.run_id) AS run_id
        FROM lake.scores s
        JOIN lake.traces t ON t.trace_id = s.trace_id AND t.dataset = s.dataset
        JOIN lake.prompts p ON p.prompt_id = t.prompt_id
        WHERE s.filter = 'decontam'
        GROUP BY s.trace_id, s.dataset, t.prompt_id, p.split_hint
        HAVING max(s.value) FILTER (WHERE s.metric = 'contaminated') = 1
    """,
    # One row per (trace, safety filter) that flagged it (filters.safety: metric 'flagged' = 1).
    "safety_flags": """
        SELECT s.trace_id, s.dataset, t.prompt_id, s.filter, max(s.reason) AS reason,
               max(s.detail) FILTER (WHERE s.metric = 'evidence') AS evidence,
               CAST(max(s.value) FILTER (WHERE s.metric = 'span_start') AS BIGINT) AS span_start,
               CAST(max(s.value) FILTER (WHERE s.metric = 'span_end') AS BIGINT) AS span_end,
               max(s.filter_version) AS filter_version, max(s.run_id) AS run_id
        FROM lake.scores s
        JOIN lake.traces t ON t.trace_id = s.trace_id AND t.dataset = s.dataset
        GROUP BY s.trace_id, s.dataset, t.prompt_id, s.filter
        HAVING max(s.value) FILTER (WHERE s.metric = 'flagged') = 1
    """,
}


class Catalog:
    """Read-only access to a catalog, optionally as of an earlier snapshot (time travel)."""

    def __init__(self, location: CatalogLocation, snapshot: int | None = None, guard: SqlGuard | None = None):
        """``guard``: the connection answers SQL from people (``tracebank sql``, ``shell``): it reads the
        catalog and nothing else, under the guard's limits (:mod:`tracebank.user_sql`)."""
        if not location.exists():
            raise TracebankError(
                f"no catalog at {location.home}: run `tracebank import` (or `tracebank init`) first, "
                f"or point --catalog / {CATALOG_ENV} at an existing catalog"
            )
        if snapshot is not None and snapshot < 0:
            raise TracebankError(f"snapshot must be 0 or more, got {snapshot}")
        self.location = location
        self.con = attach(location, read_only=True, snapshot=snapshot)
        for name, body in VIEWS.items():
            # At an early snapshot the tables a view reads may not exist yet: then the view is absent.
            with contextlib.suppress(duckdb.CatalogException):
                self.con.execute(f"CREATE TEMP VIEW {name} AS {body}")
        self.guard = guard
        if guard is not None:
            try:
                guard.lock(self.con, location.data_url)
            except BaseException:
                release(self.con)
                raise

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        release(self.con)

    def sql(self, query: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a query and return a polars DataFrame."""
        return pl.from_arrow(self.arrow(query, params))

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table:
        if self.guard is not None:
            return self.guard.run(self.con, query, params)
        try:
            return self.con.execute(query, params or []).to_arrow_table()
        except duckdb.Error as error:
            raise TracebankError(f"query failed: {str(error).splitlines()[0]}") from None

    def scalar(self, query: str, params: list[Any] | None = None) -> Any:
        row = self.con.execute(query, params or []).fetchone()
        return row[0] if row else None

    def snapshot_id(self) -> int:
        return int(self.scalar(f"SELECT id FROM {ALIAS}.current_snapshot()"))

    def datasets(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT DISTINCT dataset FROM prompts ORDER BY 1").fetchall()]

    def require_dataset(self, dataset: str) -> None:
        known = self.datasets()
        if dataset not in known:
            raise TracebankError(
                f"unknown dataset {dataset!r}; datasets in {self.location.home}: {', '.join(known) or 'none'}"
            )


def ensure_writable(location: CatalogLocation) -> None:
    """Create the catalog directory if needed and prove it is writable, with one clear error if not."""
    try:
        location.home.mkdir(parents=True, exist_ok=True)
        probe = location.home / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TracebankError(
            f"cannot write the catalog at {location.home}: {error.strerror or error}; "
            f"choose a writable directory with --catalog or {CATALOG_ENV}"
        ) from None


@contextmanager
def _write_lock(location: CatalogLocation) -> Iterator[None]:
    """One writer at a time: the second waits up to $TRACEBANK_LOCK_TIMEOUT s, then fails clearly.

    DuckDB and SQLite catalogs lock a file in the catalog home; a PostgreSQL catalog, whose writers
    may run on other machines, takes an advisory lock in its database.
    """
    if location.backend == "postgres":
        dsn = catalog_postgres.PostgresCatalog.load(location.home).dsn
        with catalog_postgres.write_lock(connection_with_extensions("postgres"), dsn, lock_timeout(), LOCK_TIMEOUT_ENV):
            yield
    else:
        with _file_lock(location):
            yield


@contextmanager
def _file_lock(location: CatalogLocation) -> Iterator[None]:
    timeout = lock_timeout()
    fd = os.open(location.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = location.lock_path.read_text().strip() or "unknown"
                    raise TracebankError(
                        f"another tracebank process (pid {holder}) is writing to {location.home}; "
                        f"waited {timeout:.0f}s ({LOCK_TIMEOUT_ENV} sets how long)"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def init(
    location: CatalogLocation, backend: str = "duckdb", metadata: str | None = None, data_path: str | None = None
) -> bool:
    """Create the catalog and its tables; returns False if it already existed.

    A PostgreSQL catalog (``metadata``: a libpq connection string) may already exist in its database,
    made from another machine: then this home joins it, taking the data path the catalog records.
    """
    if backend not in METADATA_FILES:
        raise TracebankError(f"unknown catalog backend {backend!r}; choose one of {', '.join(METADATA_FILES)}")
    if backend == "postgres":
        return _init_postgres(location, metadata, data_path)
    if metadata is not None or data_path is not None:
        raise TracebankError(
            f"--metadata and --data-path are for --backend postgres; a {backend} catalog keeps both in {location.home}"
        )
    if location.exists():
        if location.backend != backend:
            raise TracebankError(f"{location.home} already holds a {location.backend} catalog")
        return False
    ensure_writable(location)
    with _write_lock(location):
        try:
            con = attach(location, read_only=False, backend=backend)
            try:
                con.execute(f"CALL {ALIAS}.set_option('data_inlining_row_limit', 0)")  # data lives in Parquet
                _create_tables(con, "tracebank init")
            finally:
                release(con)
        except BaseException:
            for leftover in (METADATA_FILES[backend], METADATA_FILES[backend] + ".wal"):
                (location.home / leftover).unlink(missing_ok=True)  # no half-made catalog
            raise
    return True


def _init_postgres(location: CatalogLocation, metadata: str | None, data_path: str | None) -> bool:
    if metadata is None:
        raise TracebankError(f"--backend postgres needs --metadata '{catalog_postgres.EXAMPLE}'")
    dsn = catalog_postgres.check_dsn(metadata)
    wanted = catalog_postgres.check_data_path(data_path) if data_path is not None else None
    if location.exists():
        if location.backend != "postgres":
            raise TracebankError(f"{location.home} already holds a {location.backend} catalog")
        recorded = catalog_postgres.PostgresCatalog.load(location.home)
        if recorded.dsn != dsn or wanted not in (None, recorded.data_path):
            raise TracebankError(
                f"{location.home} already points at the PostgreSQL catalog {recorded.dsn!r} with data at "
                f"{recorded.data_path}; use another --catalog directory for another catalog"
            )
        return False
    probe = connection_with_extensions("postgres")
    try:
        stored = catalog_postgres.stored_data_path(probe, dsn)
    finally:
        probe.close()
    if stored is not None and wanted not in (None, stored):
        raise TracebankError(
            f"the PostgreSQL catalog ({dsn}) already keeps its data at {stored}: pass that --data-path or leave it out"
        )
    ensure_writable(location)
    config = catalog_postgres.PostgresCatalog(dsn, stored or wanted or str(location.home / "data"))
    config.save(location.home)
    try:
        with _write_lock(location):
            con = attach(location, read_only=False)
            try:
                if stored is None:
                    con.execute(f"CALL {ALIAS}.set_option('data_inlining_row_limit', 0)")  # data lives in Parquet
                _create_tables(con, "tracebank init")
            finally:
                release(con)
    except BaseException:
        (location.home / catalog_postgres.CONFIG_FILE).unlink(missing_ok=True)  # no home pointing at nothing
        raise
    return stored is None


def _create_tables(con: duckdb.DuckDBPyConnection, message: str) -> None:
    """Create missing tables, and add columns a newer tracebank defines to tables an older one made."""
    rows = con.execute(
        f"SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = '{ALIAS}'"
    ).fetchall()
    existing: dict[str, set[str]] = {}
    for table, column in rows:
        existing.setdefault(table, set()).add(column)
    statements = [
        records.create_table_sql(f"{ALIAS}.{name}", schema)
        for name, schema in records.TABLES.items()
        if name not in existing
    ]
    for name, schema in records.TABLES.items():
        for field in schema:
            if name in existing and field.name not in existing[name]:
                statements.append(
                    f'ALTER TABLE {ALIAS}.{name} ADD COLUMN "{field.name}" {records.duckdb_type(field.type)}'
                )
    if not statements:
        return
    con.execute("BEGIN")
    for statement in statements:
        con.execute(statement)
    con.execute(f"CALL {ALIAS}.set_commit_message('tracebank', ?)", [message])
    con.execute("COMMIT")


class Writer:
    """One open DuckLake transaction; see :func:`writing`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, message: str):
        self.con = con
        self.message = message  # the commit message; a stage may refine it before commit
        self.snapshot_before = int(con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])
        self.snapshot: int | None = None  # set after a successful commit that changed something

    def insert(self, table_name: str, table: pa.Table) -> int:
        """Append rows conformed to the table's schema; returns the number of rows."""
        table = records.conform(table, records.TABLES[table_name], table_name)
        if table.num_rows:
            self.con.register("_incoming", table)
            try:
                self.con.execute(f"INSERT INTO {ALIAS}.{table_name} BY NAME SELECT * FROM _incoming")
            finally:
                self.con.unregister("_incoming")
        return table.num_rows

    def execute(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params or [])

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table:
        return self.con.execute(query, params or []).to_arrow_table()


@contextmanager
def writing(location: CatalogLocation, message: str, extra: dict[str, Any] | None = None) -> Iterator[Writer]:
    """Open a write transaction; on normal exit commit it as one snapshot with ``message``.

    Any exception rolls the whole transaction back: no partial catalog commit.
    """
    ensure_writable(location)
    if not location.exists():
        init(location)
    with _write_lock(location):
        con = attach(location, read_only=False)
        try:
            _create_tables(con, "tracebank: add tables")
            con.execute("BEGIN")
            writer = Writer(con, message)
            try:
                yield writer
                con.execute(
                    f"CALL {ALIAS}.set_commit_message('tracebank', ?, extra_info => ?)",
                    [writer.message, orjson.dumps(extra or {}).decode()],
                )
                con.execute("COMMIT")
            except BaseException as error:
                with contextlib.suppress(duckdb.Error):  # after a failed COMMIT there is nothing to roll back
                    con.execute("ROLLBACK")
                if isinstance(error, duckdb.IOException) and catalog_postgres.is_remote(location.data_url):
                    raise catalog_postgres.object_store_error(location.data_url, error) from None
                if isinstance(error, (duckdb.IOException, OSError)):  # a full or read-only disk
                    raise cannot_write(f"the catalog at {location.home}", error) from None
                raise
            after = int(con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])
            writer.snapshot = after if after != writer.snapshot_before else None
        finally:
            release(con)
