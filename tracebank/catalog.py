"""The DuckLake catalog: Parquet data files plus a DuckDB or SQLite metadata database.

Readers attach read-only (optionally at an earlier snapshot) and get polars DataFrames back.
Writers take a file lock, write every table of a stage in one DuckLake transaction and commit
it with a message: a stage either lands as one snapshot or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa

from tracebank import records
from tracebank.errors import TracebankError

DEFAULT_HOME = ".tracebank"
CATALOG_ENV = "TRACEBANK_CATALOG"
LOCK_TIMEOUT_ENV = "TRACEBANK_LOCK_TIMEOUT"
METADATA_FILES = {"duckdb": "catalog.ducklake", "sqlite": "catalog.sqlite"}
ALIAS = "lake"

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


@dataclass(frozen=True)
class CatalogLocation:
    """Where a catalog lives: one directory holding metadata, Parquet data and the request cache."""

    home: Path

    @property
    def backend(self) -> str:
        for backend, name in METADATA_FILES.items():
            if (self.home / name).exists():
                return backend
        return "duckdb"

    @property
    def metadata(self) -> Path:
        return self.home / METADATA_FILES[self.backend]

    @property
    def data_path(self) -> Path:
        return self.home / "data"

    @property
    def request_cache(self) -> Path:
        return self.home / "requests.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.home / "write.lock"

    def exists(self) -> bool:
        return any((self.home / name).exists() for name in METADATA_FILES.values())


def locate(catalog: str | os.PathLike[str] | None = None) -> CatalogLocation:
    """Resolve ``--catalog``, else ``$TRACEBANK_CATALOG``, else ``./.tracebank`` to an absolute path.

    DuckLake resolves a relative DATA_PATH against each reader's working directory, so the
    path is made absolute here, once.
    """
    raw = catalog or os.environ.get(CATALOG_ENV) or DEFAULT_HOME
    return CatalogLocation(Path(raw).expanduser().absolute())


def _extension(package: str, name: str) -> Path:
    """The extension file shipped in a pip package, for this exact DuckDB version."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise TracebankError(
            f"the DuckDB extension package {package.replace('_', '-')} is not installed: "
            f"pip install {package.replace('_', '-')}=={duckdb.__version__}"
        ) from None
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise TracebankError(f"{path} is missing: install {package.replace('_', '-')}=={duckdb.__version__}")
    return path


def _quote(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _loaded(backend: str) -> duckdb.DuckDBPyConnection:
    """A new in-memory connection with the extensions a ``backend`` catalog needs, attached to nothing."""
    # autoinstall off: no run may try to download anything; extensions load from package paths.
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.execute(f"LOAD {_quote(_extension('duckdb_extension_ducklake', 'ducklake'))}")
        if backend == "sqlite":
            con.execute(f"LOAD {_quote(_extension('duckdb_extension_sqlite_scanner', 'sqlite_scanner'))}")
    except BaseException:
        con.close()
        raise
    return con


# Connections loaded ahead of need by warm_up(), per backend: loading verifies each extension's
# signature (about 0.1 s for DuckLake), which a long stage can do in the background.
_SPARES: dict[str, queue.SimpleQueue[duckdb.DuckDBPyConnection]] = {b: queue.SimpleQueue() for b in METADATA_FILES}


def warm_up(location: CatalogLocation) -> None:
    """Load the extensions for this process's next catalog connection in a background thread.

    Call it before long work that ends with a catalog write (a build's sends): the write then
    starts without the load. A spare holds no catalog open and no lock; a failed load is left to
    the next connection, which reports it.
    """
    backend = location.backend

    def load() -> None:
        with contextlib.suppress(Exception):
            _SPARES[backend].put(_loaded(backend))

    threading.Thread(target=load, name="tracebank-warm-up", daemon=True).start()


def _connect(
    location: CatalogLocation, *, read_only: bool, snapshot: int | None = None, backend: str | None = None
) -> duckdb.DuckDBPyConnection:
    backend = backend or location.backend
    try:
        con = _SPARES[backend].get_nowait()
    except queue.Empty:
        try:
            con = _loaded(backend)
        except duckdb.Error as error:
            raise _explain(location, error, snapshot) from None
    try:
        prefix = "sqlite:" if backend == "sqlite" else ""
        options = [f"DATA_PATH {_quote(str(location.data_path) + os.sep)}"]
        if read_only:
            options.append("READ_ONLY")
        if snapshot is not None:
            options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
        metadata = location.home / METADATA_FILES[backend]
        con.execute(f"ATTACH {_quote('ducklake:' + prefix + str(metadata))} AS {ALIAS} ({', '.join(options)})")
        con.execute(f"USE {ALIAS}")
    except duckdb.Error as error:
        con.close()
        raise _explain(location, error, snapshot) from None
    return con


class _Busy(Exception):
    """The metadata database is locked by another process (DuckDB-file catalogs)."""


def _explain(location: CatalogLocation, error: duckdb.Error, snapshot: int | None) -> Exception:
    text = str(error)
    if "lock" in text.lower() or "already attached" in text:
        return _Busy(text.splitlines()[0])
    if snapshot is not None and "snapshot" in text.lower():
        return TracebankError(f"snapshot {snapshot} does not exist in the catalog at {location.home}")
    return TracebankError(f"cannot open the catalog at {location.home}: {text.splitlines()[0]}")


def lock_timeout() -> float:
    return float(os.environ.get(LOCK_TIMEOUT_ENV, "60"))


def _writer_pid(location: CatalogLocation) -> str | None:
    """The pid of the tracebank process holding the write lock, if one does."""
    try:
        fd = os.open(location.lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it exclusively
    except BlockingIOError:
        return location.lock_path.read_text().strip() or "unknown"
    finally:
        os.close(fd)


def _busy_error(location: CatalogLocation, waited: float) -> TracebankError:
    pid = _writer_pid(location)
    who = f"another tracebank process (pid {pid}) is writing to" if pid else "another process has open"
    return TracebankError(
        f"{who} the catalog at {location.home}; waited {waited:.0f}s ({LOCK_TIMEOUT_ENV} sets how long). "
        "A SQLite catalog (tracebank init --backend sqlite) lets readers work while a writer does"
    )


def _attach(
    location: CatalogLocation, *, read_only: bool, snapshot: int | None = None, backend: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Connect, waiting up to the lock timeout while another process holds a DuckDB-file catalog."""
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _connect(location, read_only=read_only, snapshot=snapshot, backend=backend)
        except _Busy:
            if time.monotonic() >= deadline:
                raise _busy_error(location, timeout) from None
            time.sleep(0.2)


class Catalog:
    """Read-only access to a catalog, optionally as of an earlier snapshot (time travel)."""

    def __init__(self, location: CatalogLocation, snapshot: int | None = None):
        if not location.exists():
            raise TracebankError(
                f"no catalog at {location.home}: run `tracebank import` (or `tracebank init`) first, "
                f"or point --catalog / {CATALOG_ENV} at an existing catalog"
            )
        if snapshot is not None and snapshot < 0:
            raise TracebankError(f"snapshot must be 0 or more, got {snapshot}")
        self.location = location
        self.con = _attach(location, read_only=True, snapshot=snapshot)
        for name, body in VIEWS.items():
            # At an early snapshot the tables a view reads may not exist yet: then the view is absent.
            with contextlib.suppress(duckdb.CatalogException):
                self.con.execute(f"CREATE TEMP VIEW {name} AS {body}")

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def sql(self, query: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a query and return a polars DataFrame."""
        return pl.from_arrow(self.arrow(query, params))

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table:
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
    """One writer at a time: the second waits up to $TRACEBANK_LOCK_TIMEOUT s, then fails clearly."""
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


def init(location: CatalogLocation, backend: str = "duckdb") -> bool:
    """Create the catalog and its tables; returns False if it already existed."""
    if backend not in METADATA_FILES:
        raise TracebankError(f"unknown catalog backend {backend!r}; choose one of {', '.join(METADATA_FILES)}")
    if location.exists():
        if location.backend != backend:
            raise TracebankError(f"{location.home} already holds a {location.backend} catalog")
        return False
    ensure_writable(location)
    with _write_lock(location):
        try:
            con = _attach(location, read_only=False, backend=backend)
            try:
                con.execute(f"CALL {ALIAS}.set_option('data_inlining_row_limit', 0)")  # data lives in Parquet
                _create_tables(con, "tracebank init")
            finally:
                con.close()
        except BaseException:
            for leftover in (METADATA_FILES[backend], METADATA_FILES[backend] + ".wal"):
                (location.home / leftover).unlink(missing_ok=True)  # no half-made catalog
            raise
    return True


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
        con = _attach(location, read_only=False)
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
            except BaseException:
                con.execute("ROLLBACK")
                raise
            after = int(con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])
            writer.snapshot = after if after != writer.snapshot_before else None
        finally:
            con.close()
