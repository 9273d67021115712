"""Stream trace rows to Parquet as they arrive; register the files in the catalog in one commit.

Rows are written in row groups of ``rows_per_group`` (memory stays flat however many requests a
build sends) to files staged in the traces table's own data directory. At the end the stage
registers them with DuckLake's ``ducklake_add_data_files`` inside the stage's single
transaction (the files are not copied; DuckLake owns them from then on), so the new traces
appear as one snapshot or not at all. Files of a build that fails, or is killed before it
commits, are never registered and are deleted: by this process on its way out, or by the next
build (a file whose writer process is gone and that no snapshot references).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracebank import catalog as catalog_mod
from tracebank import records
from tracebank.builders.cache import alive
from tracebank.catalog_postgres import is_remote
from tracebank.errors import TracebankError, cannot_write

PREFIX = "tracebank-staged"
_STAGED = re.compile(rf"^{PREFIX}-(\d+)-.+\.parquet$")


def on_bucket(location: catalog_mod.CatalogLocation) -> bool:
    """Whether the catalog's data lives on object storage (a PostgreSQL catalog with an s3:// data path)."""
    return is_remote(location.data_url)


def traces_dir(location: catalog_mod.CatalogLocation) -> Path:
    """Where a build stages its trace files.

    With local data, DuckLake's own directory of the traces table (<data>/main/traces/): the files
    are registered where they lie. With data on a bucket, ``staging/traces`` in the catalog home:
    the commit copies the rows to the bucket, and the staged files are deleted once it has.
    """
    if on_bucket(location):
        return location.home / "staging" / "traces"
    return location.data_path / "main" / "traces"


class TraceSink:
    def __init__(self, location: catalog_mod.CatalogLocation, run_id: str, rows_per_group: int = 4096):
        self.directory = traces_dir(location)
        self.copy = on_bucket(location)  # register by copying the rows, not by adding the files
        self.run_id = run_id
        self.rows_per_group = rows_per_group
        self.rows = 0  # rows written or buffered
        self.files: list[Path] = []
        self._buffer: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self.committed = False  # set by the caller once the transaction that registered the files committed

    def __enter__(self) -> TraceSink:
        return self

    def add(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = records.conform(pa.Table.from_pylist(self._buffer, schema=records.TRACES), records.TRACES, "traces")
        try:
            if self._writer is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"{PREFIX}-{os.getpid()}-{self.run_id}.parquet"
                self.files.append(path)
                self._writer = pq.ParquetWriter(path, records.TRACES, compression="zstd")
            self._writer.write_table(table, row_group_size=len(self._buffer))
        except OSError as error:  # the staged file is removed on the way out (__exit__)
            raise cannot_write(str(self.directory), error) from None
        self._buffer = []

    def close(self) -> list[Path]:
        """Finish the files (the last row group, the footer); returns them."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.files

    def drop_stored(self, writer: catalog_mod.Writer, dataset: str) -> int:
        """Remove staged rows whose trace_id the catalog already holds (as ``writer`` sees it); returns how many.

        Called under the writer lock: a build that overlapped another planned its traces before
        the other committed, and must not add them twice.
        """
        files = [str(path) for path in self.close()]
        if not files:
            return 0
        stored = writer.arrow(
            "SELECT trace_id FROM traces WHERE dataset = ? AND trace_id IN (SELECT trace_id FROM read_parquet(?))",
            [dataset, files],
        ).column(0)
        if not len(stored):
            return 0
        dropped = 0
        for path in list(self.files):
            partial, kept = path.with_name(path.name + ".partial"), 0
            with pq.ParquetFile(path) as source, pq.ParquetWriter(partial, records.TRACES, compression="zstd") as out:
                for batch in source.iter_batches():
                    rows = pa.Table.from_batches([batch]).filter(pc.invert(pc.is_in(batch.column("trace_id"), stored)))
                    out.write_table(rows)
                    kept, dropped = kept + rows.num_rows, dropped + batch.num_rows - rows.num_rows
            if kept:
                os.replace(partial, path)
            else:  # nothing left to register
                partial.unlink()
                path.unlink()
                self.files.remove(path)
        self.rows -= dropped
        return dropped

    def register(self, writer: catalog_mod.Writer) -> None:
        """Add the staged rows to the traces table inside ``writer``'s transaction."""
        files = [str(path) for path in self.close()]
        if self.copy and files:  # DuckLake writes them to the bucket as part of the transaction
            writer.execute(f"INSERT INTO {catalog_mod.ALIAS}.traces BY NAME SELECT * FROM read_parquet(?)", [files])
            return
        for path in files:
            writer.execute(f"CALL ducklake_add_data_files('{catalog_mod.ALIAS}', 'traces', ?)", [path])

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.close()
            else:  # the error that ends the build is the one to report, not a second one on the same full disk
                with contextlib.suppress(OSError, TracebankError):
                    self.close()
        finally:
            if not self.committed or self.copy:  # copied rows live in the bucket: the staged file is spare
                for path in self.files:
                    with contextlib.suppress(OSError):
                        path.unlink(missing_ok=True)


def sweep(location: catalog_mod.CatalogLocation, registered: set[str]) -> int:
    """Delete staged files left by dead processes that no snapshot references; returns how many.

    ``registered`` (the files of the current snapshot) settles most files at no cost; the others
    are checked against every snapshot, since a file that a later commit deleted rows from still
    holds what time travel to earlier snapshots reads.
    """
    directory = traces_dir(location)
    if not directory.is_dir():
        return 0
    candidates = []
    for path in directory.glob(f"{PREFIX}-*.parquet"):
        match = _STAGED.match(path.name)
        if match is None or alive(int(match.group(1))) or str(path) in registered or path.name in registered:
            continue
        candidates.append(path)
    if candidates and not on_bucket(location):  # staged for a bucket: never a data file of any snapshot
        referenced = _referenced_by_any_snapshot(location)
        candidates = [] if referenced is None else [p for p in candidates if p.name not in referenced]
    removed = 0
    for path in candidates:
        with contextlib.suppress(OSError):  # a read-only catalog: the next build that can write removes it
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _referenced_by_any_snapshot(location: catalog_mod.CatalogLocation) -> set[str] | None:
    """Names of the data files any snapshot of the catalog holds; None if the metadata cannot tell."""
    try:
        with catalog_mod.Catalog(location) as cat:
            rows = cat.con.execute(f"SELECT path FROM __ducklake_metadata_{catalog_mod.ALIAS}.ducklake_data_file")
            return {Path(path).name for (path,) in rows.fetchall()}
    except (duckdb.Error, TracebankError):
        return None
