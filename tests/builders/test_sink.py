"""Streamed trace files: row groups as rows arrive, one atomic registration, no leftovers."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.builders.sink import PREFIX, TraceSink, sweep, traces_dir


def _registered(location):
    with catalog.Catalog(location) as cat:
        return set(cat.arrow("SELECT data_file FROM ducklake_list_files('lake', 'traces')").column(0).to_pylist())


def test_traces_stream_in_row_groups_and_land_as_one_snapshot(location, math_dataset, monkeypatch):
    monkeypatch.setattr(TraceSink.__init__, "__defaults__", (5,))  # a row group every 5 traces
    result = build(location, BuildConfig(math_dataset, samples=4), FakeTeacher())
    (staged,) = [p for p in traces_dir(location).glob(f"{PREFIX}-*.parquet")]
    assert pq.ParquetFile(staged).num_row_groups == 5  # 24 rows: 4 groups of 5 and one of 4
    assert str(staged) in _registered(location)
    with catalog.Catalog(location) as cat:
        snapshots = cat.sql("SELECT snapshot_id, commit_message FROM lake.snapshots() ORDER BY snapshot_id").to_dicts()
        assert cat.scalar("SELECT count(*) FROM traces") == 24
    assert snapshots[-1]["snapshot_id"] == result.snapshot and snapshots[-1]["commit_message"].startswith("build 24")


def test_a_failed_commit_leaves_no_files_and_no_snapshot(location, math_dataset, monkeypatch):
    def explode(self, writer):
        raise RuntimeError("disk full")

    with catalog.Catalog(location) as cat:
        before = cat.snapshot_id()
    monkeypatch.setattr(TraceSink, "register", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    assert list(traces_dir(location).glob(f"{PREFIX}-*")) == []
    with catalog.Catalog(location) as cat:
        assert cat.snapshot_id() == before and cat.scalar("SELECT count(*) FROM traces") == 0


def test_sweep_removes_only_unregistered_files_of_dead_processes(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=1), FakeTeacher())
    directory = traces_dir(location)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = directory / f"{PREFIX}-{dead.stdout.strip()}-build-x.parquet"
    live = directory / f"{PREFIX}-{os.getpid()}-build-y.parquet"
    orphan.write_bytes(b"partial")
    live.write_bytes(b"being written")
    registered = _registered(location)
    assert sweep(location, registered) == 1
    assert not orphan.exists() and live.exists() and all(os.path.exists(p) for p in registered)
    live.unlink()


def test_staged_files_register_in_a_sqlite_catalog_too(tmp_path, math_file):
    from tracebank.importer import ColumnMap, ImportConfig, import_data

    location = catalog.locate(tmp_path / "sqlite-catalog")
    catalog.init(location, backend="sqlite")
    import_data(location, ImportConfig(str(math_file), "toy", ColumnMap.parse("prompt=question,reference=answer")))
    result = build(location, BuildConfig("toy", samples=2), FakeTeacher())
    with catalog.Catalog(location) as cat:
        assert location.backend == "sqlite" and cat.scalar("SELECT count(*) FROM traces") == result.traces_new == 12


def test_rows_another_build_committed_first_are_dropped_under_the_lock(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    with catalog.Catalog(location) as cat:
        stored = cat.arrow("SELECT * FROM traces ORDER BY trace_id").to_pylist()
    with TraceSink(location, "late-run", rows_per_group=3) as sink:
        for row in stored[:5]:  # planned before the other build committed: already there now
            sink.add(row)
        sink.add({**stored[5], "trace_id": "new-trace"})
        with catalog.writing(location, "late build") as writer:
            assert sink.drop_stored(writer, math_dataset) == 5
            sink.register(writer)
        sink.committed = True
    assert sink.rows == 1 and [f.name for f in sink.files] == [f"{PREFIX}-{os.getpid()}-late-run.parquet"]
    with catalog.Catalog(location) as cat:
        ids = cat.arrow("SELECT trace_id FROM traces").column(0).to_pylist()
    assert len(ids) == len(set(ids)) == len(stored) + 1 and "new-trace" in ids
