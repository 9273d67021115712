"""SQL from people: ``tracebank sql``, ``tracebank shell`` and ``Catalog(..., guard=SqlGuard())`` read the
catalog and nothing else.

Two layers, DuckDB's own settings first:

1. The connection is locked down once the catalog is attached and its views made: no file or URL
   outside the catalog's data path can be read or written (``enable_external_access = false`` with
   ``allowed_directories`` = the data path), no extension loaded, no Python object scanned, nothing
   spilled to disk, a memory limit; then ``lock_configuration = true``, so no statement can undo it.
2. Each statement is checked with DuckDB's parser before anything runs: only ``SELECT`` (with
   ``SHOW``, ``DESCRIBE``, ``SUMMARIZE``, ``FROM ...``) and ``EXPLAIN`` pass; ``COPY``, ``EXPORT``,
   ``ATTACH``, ``DETACH``, ``INSTALL``, ``LOAD``, ``SET``, ``PRAGMA``, ``CALL``, ``CREATE``, ``INSERT``,
   ``CHECKPOINT`` and the rest are refused, and so are DuckLake's table functions that change files
   (``ducklake_cleanup_old_files``, ``merge_adjacent_files``, ...): the catalog's own data path is
   readable, so only the parser can keep a write from landing there.

A query runs under a time limit (interrupted past it) and a cap on the rows it returns. Every
refusal is one :class:`TracebankError` line saying what was refused and why; nothing is written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from tracebank.errors import TracebankError

ALLOWED = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
# DuckLake table functions that only read (as lake.NAME() or ducklake_NAME(...)); the others change files.
DUCKLAKE_READS = frozenset({
    "snapshots", "current_snapshot", "last_committed_snapshot", "table_info", "table_changes",
    "table_insertions", "table_deletions", "list_files", "options", "settings",
})  # fmt: skip
# Functions that run SQL given as text, or SQL of the metadata database's own engine: no check sees inside.
SQL_RUNNERS = frozenset({"query", "query_table", "json_execute_serialized_sql"})
SCANNER_PREFIXES = ("postgres_", "sqlite_", "mysql_")


def _default_memory() -> str:
    """Half the machine's memory, at most 4 GiB: a runaway query fails before the machine swaps."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "4GiB"
    return f"{max(256, min(4096, total // 2**21))}MiB"


@dataclass(frozen=True)
class SqlGuard:
    """Limits of a guarded connection (``tracebank sql --timeout/--max-result-rows``)."""

    timeout_s: float = 300.0
    max_result_rows: int = 1_000_000
    memory_limit: str = ""  # a DuckDB size ('2GiB'); empty: half the machine, at most 4 GiB

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise TracebankError(f"the SQL timeout must be more than 0 seconds, got {self.timeout_s}")
        if self.max_result_rows < 1:
            raise TracebankError(f"the result row cap must be at least 1, got {self.max_result_rows}")

    def lock(self, con: duckdb.DuckDBPyConnection, data_url: str) -> None:
        """Lock ``con`` down to reading under ``data_url`` (a directory or bucket URL ending in a separator)."""
        for name, value in (
            ("allowed_directories", [data_url]),
            ("memory_limit", self.memory_limit or _default_memory()),
            ("temp_directory", ""),
            ("python_enable_replacements", False),
            ("allow_unredacted_secrets", False),
            ("autoinstall_known_extensions", False),
            ("autoload_known_extensions", False),
            ("enable_external_access", False),
            ("lock_configuration", True),
        ):
            con.execute(f"SET {name} = {_literal(value)}")

    def check(self, con: duckdb.DuckDBPyConnection, query: str) -> None:
        """Refuse ``query`` unless every statement in it only reads (see the module docstring)."""
        if "\x00" in query:
            raise TracebankError("refused: a NUL character is not SQL")
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as error:
            raise TracebankError(f"query failed: {str(error).splitlines()[0]}") from None
        if not statements:
            raise TracebankError("refused: no SQL statement given")
        for statement in statements:
            if statement.type not in ALLOWED:
                kind = str(statement.type).rsplit(".", 1)[-1]
                raise TracebankError(
                    f"refused: {kind} statements are not allowed, SQL here is read-only (SELECT, SHOW, DESCRIBE, "
                    "SUMMARIZE, EXPLAIN over the catalog)"
                )
            if statement.type == duckdb.StatementType.SELECT:
                _check_functions(con, statement.query)

    def run(self, con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None) -> pa.Table:
        """Check ``query``, run it under the time limit and return at most ``max_result_rows`` rows."""
        self.check(con, query)
        timer = threading.Timer(self.timeout_s, con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            reader = con.execute(query, params or []).to_arrow_reader(65536)
            batches, rows = [], 0
            for batch in reader:
                rows += batch.num_rows
                if rows > self.max_result_rows:
                    raise TracebankError(
                        f"refused: the result has more than {self.max_result_rows:,} rows; add a LIMIT or an "
                        "aggregate (or raise --max-result-rows)"
                    )
                batches.append(batch)
            return pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.InterruptException:
            raise TracebankError(
                f"refused: the query ran past {self.timeout_s:g} s and was stopped (--timeout)"
            ) from None
        except duckdb.PermissionException as error:
            raise TracebankError(f"refused: {_permission(error)}") from None
        except duckdb.Error as error:
            raise TracebankError(f"query failed: {str(error).splitlines()[0]}") from None
        finally:
            timer.cancel()


def _literal(value: bool | str | list[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return "'" + value.replace("'", "''") + "'"


def _permission(error: duckdb.Error) -> str:
    text = str(error).splitlines()[0].removeprefix("Permission Error: ")
    return f"{text}: SQL here reads the catalog only"


def nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every object in a ``json_serialize_sql`` tree."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from nodes(value)


def _check_functions(con: duckdb.DuckDBPyConnection, select: str) -> None:
    """Refuse the DuckLake table functions that change files (the data path itself is readable and writable)."""
    tree = orjson.loads(con.execute("SELECT json_serialize_sql(?)", [select]).fetchone()[0])
    if tree.get("error"):
        raise TracebankError(
            "refused: this statement cannot be checked (write PRAGMA as SHOW or a SELECT): "
            + tree.get("error_message", "")
        )
    for node in nodes(tree["statements"]):
        name = str(node.get("function_name") or "").lower()
        if name in SQL_RUNNERS or name.startswith(SCANNER_PREFIXES):
            raise TracebankError(
                f"refused: {name}() runs SQL given as text (or on another database), which cannot be checked"
            )
        if node.get("type") != "TABLE_FUNCTION":
            continue
        function = node.get("function") or {}
        name = str(function.get("function_name") or "").lower()
        schema = str(function.get("schema") or "").lower()
        lake = name.startswith("ducklake_") or (schema and schema not in ("main", "memory", "system", "temp"))
        if lake and name.removeprefix("ducklake_") not in DUCKLAKE_READS:
            raise TracebankError(
                f"refused: {name}() changes the catalog's files; SQL here is read-only "
                f"(DuckLake functions allowed: {', '.join(sorted(DUCKLAKE_READS))})"
            )
