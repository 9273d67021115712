"""Policy expressions are SQL that a policy file brings in: they may read, never write or reach out.

A policy's ``when``, ``reason`` and ``order_by`` are pasted into the query that decides a release,
inside the writer's transaction. Each must parse, on its own, as one SQL expression (so no
``; DROP TABLE``, ``COPY ... TO`` or ``ATTACH`` can ride along) that calls no table function (no
``read_csv('/etc/passwd')``, ``glob``, ``query``), reads no file by its path (``FROM 'x.csv'``) and none of the functions that read files, the
environment or other databases. Subqueries over the catalog's own tables stay allowed.
"""

from __future__ import annotations

import functools
import re

import duckdb
import orjson

from tracebank.errors import TracebankError
from tracebank.user_sql import nodes

# Scalar functions that reach outside the catalog (files, environment, settings, other databases).
FORBIDDEN_FUNCTIONS = frozenset({
    "getenv", "current_setting", "glob", "query", "query_table", "sniff_csv", "read_blob", "read_text",
    "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata",
    "sqlite_scan", "sqlite_query", "postgres_scan", "postgres_query", "postgres_execute", "mysql_query",
    "iceberg_scan", "delta_scan", "shell", "system", "load", "install",
})  # fmt: skip
FORBIDDEN_PREFIXES = ("read_", "ducklake_", "duckdb_", "pragma_", "sqlite_", "postgres_", "mysql_")
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a table or CTE; a quoted path ('/etc/passwd') is a file scan


@functools.cache
def _parser() -> duckdb.DuckDBPyConnection:
    """An empty in-memory database, used only to parse (``json_serialize_sql`` never runs a query)."""
    return duckdb.connect(":memory:", config={"enable_external_access": False, "autoinstall_known_extensions": False})


def check_expression(expression: str, what: str) -> None:
    """Refuse ``expression`` unless it is one read-only SQL expression (see the module docstring)."""
    if "\x00" in expression:
        raise TracebankError(f"{what}: a NUL character is not SQL")
    tree = orjson.loads(_parser().execute("SELECT json_serialize_sql(?)", [f"SELECT ({expression})"]).fetchone()[0])
    if tree.get("error"):
        detail = tree.get("error_message", "does not parse")
        raise TracebankError(f"{what}: not one SQL expression ({detail}): {expression!r}")
    if len(tree["statements"]) != 1:
        raise TracebankError(f"{what}: one SQL expression, not several statements: {expression!r}")
    for node in nodes(tree["statements"][0]):
        if node.get("type") == "TABLE_FUNCTION":
            raise TracebankError(f"{what}: table functions are not allowed in a policy: {expression!r}")
        if node.get("type") == "BASE_TABLE" and not TABLE_NAME.fullmatch(str(node.get("table_name"))):
            raise TracebankError(f"{what}: only the catalog's tables may be read, not {node.get('table_name')!r}")
        name = str(node.get("function_name") or "").lower()
        if name and (name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_PREFIXES)):
            raise TracebankError(f"{what}: {name}() reaches outside the catalog and is not allowed in a policy")
