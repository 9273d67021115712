"""The DuckLake catalog: Parquet data files plus a DuckDB, SQLite or PostgreSQL metadata database.

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

from tracebank import catalog_postgres, records
from tracebank.errors import TracebankError, cannot_write

DEFAULT_HOME = ".tracebank"
CATALOG_ENV = "TRACEBANK_CATALOG"
LOCK_TIMEOUT_ENV = "TRACEBANK_LOCK_TIMEOUT"
# The file in the catalog home that marks each backend (for PostgreSQL, a config naming the database).
METADATA_FILES = {"duckdb": "catalog.ducklake", "sqlite": "catalog.sqlite", "postgres": catalog_postgres.CONFIG_FILE}
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
    """Where a catalog lives: one directory holding metadata (or, for PostgreSQL, where it is), data, the cache."""

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
    def data_url(self) -> str:
        """DuckLake's DATA_PATH: an absolute directory or a bucket URL, ending with a separator."""
        if self.backend == "postgres":
            return catalog_postgres.PostgresCatalog.load(self.home).data_path
        return str(self.home / "data") + os.sep

    @property
    def data_path(self) -> Path:
        """The local directory holding the Parquet data (for code that writes files itself)."""
        url = self.data_url
        if catalog_postgres.is_remote(url):
            raise TracebankError(
                f"the catalog at {self.home} keeps its data at {url}; this step writes Parquet files itself "
                "and needs a catalog whose data path is a local directory"
            )
        return Path(url)

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
    home = Path(raw).expanduser().absolute()
    _check_home(home)
    return CatalogLocation(home)


# Where no catalog, card or published dataset may go: writing there could break the system. Inside
# these, nothing; these themselves only (a project may live in /usr/src/app or /home/me).
SYSTEM_TREES = tuple(Path(p) for p in (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
    "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/sbin", "/usr/share",
))  # fmt: skip
SYSTEM_DIRS = tuple(Path(p) for p in ("/", "/home", "/media", "/mnt", "/opt", "/run", "/srv", "/usr", "/usr/local",
                                      "/var"))  # fmt: skip


def refuse_system_path(path: Path, what: str) -> Path:
    """``path`` with links and '..' resolved; a system directory, or a place inside a system tree, is refused."""
    real = Path(os.path.realpath(path))
    if real in SYSTEM_DIRS or any(real == tree or tree in real.parents for tree in SYSTEM_TREES):
        raise TracebankError(f"{what} {path} is {real}, a system location: choose a directory of your own")
    return real


def _own_entry(name: str) -> bool:
    """Whether a name in a catalog's home is one of the catalog's own (the home may hold other things)."""
    return name in ("data", "cards", "write.lock") or name.startswith(("catalog.", "requests.sqlite"))


def _check_home(home: Path) -> None:
    """A catalog home is a directory outside system locations, and none of its own files links outside
    it: readers would read, and cleanup delete, files that belong to something else."""
    real = refuse_system_path(home, "the catalog")
    if not home.exists():
        return
    if not home.is_dir():
        raise TracebankError(f"the catalog {home} is a file, not a directory: point --catalog at a directory")
    stack, top = [home], True
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if top and not _own_entry(entry.name):
                    continue
                if entry.is_symlink():
                    target = Path(os.path.realpath(entry.path))
                    if target != real and real not in target.parents:
                        raise TracebankError(
                            f"{entry.path} in the catalog links to {target}, outside the catalog: "
                            "replace the link with the files themselves (or point --catalog at where they are)"
                        )
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
        top = False


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
        if backend == "postgres":
            con.execute(f"LOAD {_quote(_extension('duckdb_extension_postgres_scanner', 'postgres_scanner'))}")
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
            raise _explain(location, error, snapshot, backend) from None
    try:
        target, data_url = _target(location, backend)
        if catalog_postgres.is_remote(data_url):
            _open_object_store(con)
        options = [f"DATA_PATH {_quote(data_url)}"]
        if read_only:
            options.append("READ_ONLY")
        if snapshot is not None:
            options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
        con.execute(f"ATTACH {_quote(target)} AS {ALIAS} ({', '.join(options)})")
        con.execute(f"USE {ALIAS}")
    except duckdb.Error as error:
        con.close()
        raise _explain(location, error, snapshot, backend) from None
    except BaseException:
        con.close()
        raise
    return con


def _target(location: CatalogLocation, backend: str) -> tuple[str, str]:
    """What DuckLake attaches (``ducklake:`` + metadata database) and its DATA_PATH."""
    if backend == "postgres":
        config = catalog_postgres.PostgresCatalog.load(location.home)
        return f"ducklake:{catalog_postgres.PREFIX}{config.dsn}", config.data_path
    prefix = "sqlite:" if backend == "sqlite" else ""
    return f"ducklake:{prefix}{location.home / METADATA_FILES[backend]}", location.data_url


def _open_object_store(con: duckdb.DuckDBPyConnection) -> None:
    """Let ``con`` read and write a bucket: httpfs from its pip package, credentials from the environment."""
    con.execute(f"LOAD {_quote(_extension('duckdb_extension_httpfs', 'httpfs'))}")
    secret = catalog_postgres.object_store_secret(os.environ)
    if secret:
        # A TEMPORARY secret lives in this connection only: credentials are never written anywhere.
        con.execute(f"CREATE TEMPORARY SECRET tracebank_store ({secret})")


class _Busy(Exception):
    """The metadata database is locked by another process (DuckDB-file catalogs)."""


def _explain(location: CatalogLocation, error: duckdb.Error, snapshot: int | None, backend: str) -> Exception:
    text = str(error)
    if snapshot is not None and "snapshot" in text.lower():
        return TracebankError(f"snapshot {snapshot} does not exist in the catalog at {location.home}")
    if backend == "postgres":  # PostgreSQL handles its own concurrency: nothing here is a file lock to wait on
        return catalog_postgres.explain(catalog_postgres.PostgresCatalog.load(location.home).dsn, error)
    if "lock" in text.lower() or "already attached" in text:
        return _Busy(text.splitlines()[0])
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
    """One writer at a time: the second waits up to $TRACEBANK_LOCK_TIMEOUT s, then fails clearly.

    DuckDB and SQLite catalogs lock a file in the catalog home; a PostgreSQL catalog, whose writers
    may run on other machines, takes an advisory lock in its database.
    """
    if location.backend == "postgres":
        dsn = catalog_postgres.PostgresCatalog.load(location.home).dsn
        with catalog_postgres.write_lock(_loaded("postgres"), dsn, lock_timeout(), LOCK_TIMEOUT_ENV):
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
    probe = _loaded("postgres")
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
            con = _attach(location, read_only=False)
            try:
                if stored is None:
                    con.execute(f"CALL {ALIAS}.set_option('data_inlining_row_limit', 0)")  # data lives in Parquet
                _create_tables(con, "tracebank init")
            finally:
                con.close()
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
            con.close()
