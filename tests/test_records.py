import pyarrow as pa
import pytest

from tracebank import records
from tracebank.errors import TracebankError


def test_duckdb_types_cover_every_schema():
    for name, schema in records.TABLES.items():
        sql = records.create_table_sql(f"x.{name}", schema)
        assert sql.count('" ') >= len(schema.names)  # every column rendered with a type


def test_nested_types_map_explicitly():
    assert records.duckdb_type(records.MESSAGES) == 'STRUCT("role" VARCHAR, "content" VARCHAR)[]'
    assert records.duckdb_type(records.TIMESTAMP) == "TIMESTAMPTZ"


def test_conform_names_the_missing_column():
    table = pa.table({"trace_id": ["a"]})
    with pytest.raises(TracebankError, match="missing columns .*'prompt_id'"):
        records.conform(table, records.DECISIONS, "decisions")


def test_conform_rejects_null_in_required_column():
    row = {
        "dataset": "d",
        "version": 1,
        "trace_id": None,
        "prompt_id": "p",
        "keep": True,
        "rule": "r",
        "reason": "r",
        "split": "train",
    }
    table = pa.Table.from_pylist([row], schema=records.DECISIONS.set(2, pa.field("trace_id", pa.string())))
    with pytest.raises(TracebankError, match="'trace_id' has nulls"):
        records.conform(table, records.DECISIONS, "decisions")


def test_to_table_requires_every_field():
    with pytest.raises(TypeError, match="lack columns"):
        records.to_table([{"dataset": "d"}], records.DECISIONS)
