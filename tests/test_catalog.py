import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from tests.conftest import tree_fingerprint
from tracebank import catalog, records
from tracebank.errors import TracebankError


def _decision(trace_id: str, version: int = 1) -> pa.Table:
    row = {"dataset": "d", "version": version, "trace_id": trace_id, "prompt_id": "p", "keep": True,
           "rule": "default", "reason": "default", "split": "train", "rank": 1}  # fmt: skip
    return records.to_table([row], records.DECISIONS)


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_init_creates_every_table(location, backend):
    assert catalog.init(location, backend)
    assert location.backend == backend
    assert not catalog.init(location, backend)  # idempotent
    with catalog.Catalog(location) as cat:
        tables = set(
            cat.sql("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'lake'")["table_name"]
        )
    assert set(records.TABLES) <= tables


def test_init_refuses_a_different_backend(location):
    catalog.init(location, "duckdb")
    with pytest.raises(TracebankError, match="already holds a duckdb catalog"):
        catalog.init(location, "sqlite")


def test_write_commits_one_snapshot_with_parquet_data(location):
    catalog.init(location)
    with catalog.writing(location, "two rows") as writer:
        writer.insert("decisions", _decision("a"))
        writer.insert("decisions", _decision("b"))
    with catalog.Catalog(location) as cat:
        assert cat.snapshot_id() == writer.snapshot == writer.snapshot_before + 1
        assert cat.scalar("SELECT commit_message FROM lake.snapshots() ORDER BY snapshot_id DESC LIMIT 1") == "two rows"
        assert cat.scalar("SELECT count(*) FROM decisions") == 2
    assert list(location.data_path.rglob("*.parquet")), "data must land in Parquet, not inlined in metadata"


def test_failed_write_leaves_catalog_and_files_unchanged(location):
    catalog.init(location)
    with catalog.writing(location, "first") as writer:
        writer.insert("decisions", _decision("a"))
    before = tree_fingerprint(location.home)
    with pytest.raises(RuntimeError), catalog.writing(location, "broken") as writer:
        writer.insert("decisions", _decision("b"))
        raise RuntimeError("stage crashed after writing")
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM decisions") == 1
        assert cat.snapshot_id() == writer.snapshot_before
    after = tree_fingerprint(location.home)
    assert {k: v for k, v in after.items() if k != "write.lock"} == {
        k: v for k, v in before.items() if k != "write.lock"
    }


def test_time_travel_reads_an_earlier_snapshot(location):
    catalog.init(location)
    with catalog.writing(location, "a") as first:
        first.insert("decisions", _decision("a"))
    with catalog.writing(location, "b") as second:
        second.insert("decisions", _decision("b"))
    with catalog.Catalog(location, snapshot=first.snapshot) as cat:
        assert cat.scalar("SELECT count(*) FROM decisions") == 1
    with catalog.Catalog(location) as cat:
        assert cat.scalar(f"SELECT count(*) FROM decisions AT (VERSION => {first.snapshot})") == 1
        assert cat.scalar("SELECT count(*) FROM decisions") == 2


def test_reader_of_missing_catalog_gets_clear_error(tmp_path):
    with pytest.raises(TracebankError, match="no catalog at .*tracebank import"):
        catalog.Catalog(catalog.locate(tmp_path / "nothing"))
    assert not (tmp_path / "nothing").exists()


def test_unwritable_catalog_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TracebankError, match="cannot write the catalog"):
        catalog.ensure_writable(catalog.locate(blocker / "catalog"))


def test_relative_catalog_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(catalog.CATALOG_ENV, raising=False)
    assert catalog.locate(None).home == tmp_path / ".tracebank"
    monkeypatch.setenv(catalog.CATALOG_ENV, "rel/cat")
    assert catalog.locate(None).home == tmp_path / "rel" / "cat"


def test_second_writer_fails_clearly_after_waiting(location, monkeypatch):
    catalog.init(location)
    monkeypatch.setenv(catalog.LOCK_TIMEOUT_ENV, "0.5")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with catalog._write_lock(location):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    try:
        with pytest.raises(TracebankError, match=f"pid {os.getpid()}.* is writing"), catalog.writing(location, "x"):
            pass
    finally:
        release.set()
        thread.join()
    with catalog.writing(location, "after") as writer:  # the lock is free again
        writer.insert("decisions", _decision("z"))
    assert writer.snapshot is not None


def test_sqlite_catalog_reader_works_while_writer_is_open(location):
    catalog.init(location, "sqlite")
    with catalog.writing(location, "first") as writer:
        writer.insert("decisions", _decision("a"))
    with catalog.writing(location, "second") as writer:
        writer.insert("decisions", _decision("b"))
        with catalog.Catalog(location) as reader:  # a concurrent reader sees the last commit
            assert reader.scalar("SELECT count(*) FROM decisions") == 1
    with catalog.Catalog(location) as reader:
        assert reader.scalar("SELECT count(*) FROM decisions") == 2


def test_duckdb_catalog_reader_during_write_gets_clear_error(location):
    catalog.init(location)
    reader = f"from tracebank import catalog; catalog.Catalog(catalog.locate({str(location.home)!r}))"
    env = {**os.environ, catalog.LOCK_TIMEOUT_ENV: "1"}
    with catalog.writing(location, "w"):
        done = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert f"another tracebank process (pid {os.getpid()}) is writing to the catalog" in done.stderr
    assert "waited 1s" in done.stderr and "SQLite catalog" in done.stderr
    with catalog.writing(location, "w"):  # with time to wait, the reader waits for the writer
        reader_proc = subprocess.Popen(
            [sys.executable, "-c", reader + "; print('read')"], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.5)
    assert reader_proc.communicate(timeout=120)[0].strip() == "read"


def test_older_catalogs_gain_new_tables_and_columns_on_the_next_write(location):
    catalog.init(location)
    con = catalog.attach(location, read_only=False)
    try:  # what a catalog made before decisions.rank and the embeddings table looks like
        con.execute("ALTER TABLE lake.decisions DROP COLUMN rank")
        con.execute("DROP TABLE lake.embeddings")
    finally:
        catalog.release(con)
    with catalog.Catalog(location) as cat:
        assert "rank" not in cat.sql("DESCRIBE decisions")["column_name"].to_list()
    with catalog.writing(location, "a decision") as writer:
        writer.insert("decisions", _decision("a"))
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT rank FROM decisions") == 1
        assert cat.sql("DESCRIBE embeddings")["column_name"].to_list() == records.EMBEDDINGS.names


WRITE_FROM_ANOTHER_PROCESS = """
import sys
from tracebank import catalog, records
import pyarrow as pa
row = {"dataset": "d", "version": 1, "trace_id": sys.argv[2], "prompt_id": "p", "keep": True,
       "rule": "default", "reason": "default", "split": "train", "rank": 1}
with catalog.writing(catalog.locate(sys.argv[1]), "from another process") as writer:
    writer.insert("decisions", records.to_table([row], records.DECISIONS))
"""


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_a_released_connection_lets_go_of_the_catalog_and_leaves_the_next_one_nothing(location, backend, monkeypatch):
    """Connections share pooled DuckDBs (loading DuckLake costs 0.12 s each time): a released one
    holds no lock, and what one connection set or made is not seen by the next."""
    monkeypatch.setenv(catalog.LOCK_TIMEOUT_ENV, "0")  # a lock still held fails at once
    catalog.init(location, backend)
    with catalog.Catalog(location) as cat:
        fresh = dict(cat.con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
        cat.con.execute("CREATE TEMP VIEW mine AS SELECT 1")
        cat.con.execute("SET threads = 1")
        cat.con.execute("CREATE MACRO memory.main.leaked(x) AS x + 1")
        cat.con.execute("ATTACH ':memory:' AS other")
    for i in range(3):
        with catalog.writing(location, "here") as writer:
            writer.insert("decisions", _decision(f"here{i}"))
        done = subprocess.run([sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(location.home), f"there{i}"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM decisions") == 6
        assert dict(cat.con.execute("SELECT name, value FROM duckdb_settings()").fetchall()) == fresh
        assert cat.scalar("SELECT count(*) FROM duckdb_views() WHERE view_name = 'mine'") == 0
        assert cat.scalar("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'leaked'") == 0
        assert {d for (d,) in cat.con.execute("SELECT database_name FROM duckdb_databases()").fetchall()} == {
            "lake", "memory", "system", "temp"}  # fmt: skip


def test_connections_in_turn_load_the_extensions_once(location, monkeypatch):
    from tracebank import catalog_backends

    catalog.init(location)
    loads = []
    real = catalog_backends.connection_with_extensions
    monkeypatch.setattr(catalog_backends, "connection_with_extensions", lambda b: loads.append(b) or real(b))
    for i in range(3):
        with catalog.writing(location, "in turn") as writer:
            writer.insert("decisions", _decision(f"t{i}"))
        with catalog.Catalog(location) as cat:
            assert cat.scalar("SELECT count(*) FROM decisions") == i + 1
    assert len(loads) <= 1
