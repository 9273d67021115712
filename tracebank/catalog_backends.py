"""Where a catalog lives and how it is opened: its home, its metadata backend (a DuckDB file, SQLite or
PostgreSQL), DuckLake's DuckDB extensions from their pip packages, data on a local directory or a
bucket, and attaching with a wait while another process holds a DuckDB-file catalog.

Reading and writing (``Catalog``, ``writing``, ``init``) live in :mod:`tracebank.catalog`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tracebank import catalog_postgres
from tracebank.errors import TracebankError

DEFAULT_HOME = ".tracebank"
CATALOG_ENV = "TRACEBANK_CATALOG"
LOCK_TIMEOUT_ENV = "TRACEBANK_LOCK_TIMEOUT"
# The file in the catalog home that marks each backend (for PostgreSQL, a config naming the database).
METADATA_FILES = {"duckdb": "catalog.ducklake", "sqlite": "catalog.sqlite", "postgres": catalog_postgres.CONFIG_FILE}
ALIAS = "lake"


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


def quote(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def connection_with_extensions(backend: str) -> duckdb.DuckDBPyConnection:
    """A new in-memory connection with the extensions a ``backend`` catalog needs, attached to nothing."""
    # autoinstall off: no run may try to download anything; extensions load from package paths.
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.execute(f"LOAD {quote(_extension('duckdb_extension_ducklake', 'ducklake'))}")
        if backend == "sqlite":
            con.execute(f"LOAD {quote(_extension('duckdb_extension_sqlite_scanner', 'sqlite_scanner'))}")
        if backend == "postgres":
            con.execute(f"LOAD {quote(_extension('duckdb_extension_postgres_scanner', 'postgres_scanner'))}")
    except BaseException:
        con.close()
        raise
    return con


# Loading an extension verifies its signature: about 0.12 s for DuckLake, on every new DuckDB. So a
# catalog connection is a cursor on a pooled in-memory DuckDB that has its backend's extensions loaded
# (``_Base``): attaching the catalog is all that is left to do per connection, and ``release`` detaches
# it and gives the DuckDB back. A cursor's own state (temp views, registered tables, its transaction)
# ends with it; a DuckDB is pooled again only when it is as a fresh one is (see ``_Base.pristine``), so
# one that holds a bucket's credentials (a secret) serves that catalog only.
POOL_SIZE = 2  # per backend: a stage holds at most a reader and a writer at once


class _Base:
    def __init__(self, backend: str):
        self.backend = backend
        self.pid = os.getpid()  # a DuckDB must not be used across fork()
        self.db = connection_with_extensions(backend)
        self.fresh = self._state()

    def _state(self) -> list[tuple]:
        return self.db.execute(
            "SELECT 'setting', name, value FROM duckdb_settings() UNION ALL "
            "SELECT 'database', database_name, NULL FROM duckdb_databases() UNION ALL "
            "SELECT 'secret', name, NULL FROM duckdb_secrets() UNION ALL "
            "SELECT 'table', table_name, NULL FROM duckdb_tables() UNION ALL "
            "SELECT 'view', view_name, NULL FROM duckdb_views() WHERE NOT internal UNION ALL "
            "SELECT 'function', function_name, NULL FROM duckdb_functions() WHERE NOT internal ORDER BY ALL"
        ).fetchall()

    def pristine(self) -> bool:
        """Nothing attached, set, stored or created since it was made: the next catalog sees a fresh DuckDB."""
        return self.pid == os.getpid() and self._state() == self.fresh


_POOL: dict[str, queue.SimpleQueue[_Base]] = {b: queue.SimpleQueue() for b in METADATA_FILES}
# cursor -> the DuckDB it is on. Weak: a connection never released is closed when it is collected, as before.
_LENT: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, _Base] = weakref.WeakKeyDictionary()


def _take(backend: str) -> _Base:
    while True:
        try:
            base = _POOL[backend].get_nowait()
        except queue.Empty:
            return _Base(backend)
        if base.pid == os.getpid():
            return base


def warm_up(location: CatalogLocation) -> None:
    """Load the extensions for this process's next catalog connection in a background thread.

    Call it before long work that ends with a catalog write (a build's sends): the write then
    starts without the load. A spare holds no catalog open and no lock; a failed load is left to
    the next connection, which reports it.
    """
    backend = location.backend

    def load() -> None:
        with contextlib.suppress(Exception):
            _POOL[backend].put(_Base(backend))

    threading.Thread(target=load, name="tracebank-warm-up", daemon=True).start()


def release(con: duckdb.DuckDBPyConnection) -> None:
    """Close a connection from :func:`attach`: the catalog is detached (its lock released) and the
    DuckDB under it goes back to the pool if it is as fresh as when it was made, else it is closed."""
    con.close()
    base = _LENT.pop(con, None)
    if base is None:
        return
    try:
        base.db.execute(f"DETACH DATABASE IF EXISTS {ALIAS}")
        keep = base.pristine() and _POOL[base.backend].qsize() < POOL_SIZE
    except duckdb.Error:
        keep = False
    if keep:
        _POOL[base.backend].put(base)
    else:
        base.db.close()


def _connect(
    location: CatalogLocation, *, read_only: bool, snapshot: int | None = None, backend: str | None = None
) -> duckdb.DuckDBPyConnection:
    backend = backend or location.backend
    try:
        base = _take(backend)
    except duckdb.Error as error:
        raise _explain(location, error, snapshot, backend) from None
    con = base.db.cursor()
    _LENT[con] = base
    try:
        target, data_url = _target(location, backend)
        if catalog_postgres.is_remote(data_url):
            _open_object_store(con)
        options = [f"DATA_PATH {quote(data_url)}"]
        if read_only:
            options.append("READ_ONLY")
        if snapshot is not None:
            options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
        con.execute(f"ATTACH {quote(target)} AS {ALIAS} ({', '.join(options)})")
        con.execute(f"USE {ALIAS}")
    except duckdb.Error as error:
        release(con)
        raise _explain(location, error, snapshot, backend) from None
    except BaseException:
        release(con)
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
    con.execute(f"LOAD {quote(_extension('duckdb_extension_httpfs', 'httpfs'))}")
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


def attach(
    location: CatalogLocation, *, read_only: bool, snapshot: int | None = None, backend: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Connect, waiting up to the lock timeout while another process holds a DuckDB-file catalog.

    Give the connection back with :func:`release`, not ``close()``: that detaches the catalog too.
    """
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _connect(location, read_only=read_only, snapshot=snapshot, backend=backend)
        except _Busy:
            if time.monotonic() >= deadline:
                raise _busy_error(location, timeout) from None
            time.sleep(0.2)
