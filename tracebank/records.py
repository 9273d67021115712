"""Arrow schemas of every catalog table, written out explicitly (never inferred).

Each table is created in the DuckLake catalog from these schemas, and every writer conforms
its rows to them first, so a missing or mistyped column fails before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from tracebank.errors import TracebankError

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
TIMESTAMP = pa.timestamp("us", tz="UTC")
PARAMS = pa.struct(
    [
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_new_tokens", pa.int32()),
        ("seed", pa.int64()),
    ]
)
COUNT = pa.struct([("split", pa.string()), ("rule", pa.string()), ("keep", pa.bool_()), ("n", pa.int64())])
COUNTER = pa.struct([("name", pa.string()), ("value", pa.float64())])


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype, nullable=nullable) for name, dtype, nullable in fields])


PROMPTS = _schema(
    ("prompt_id", pa.string(), False),  # hashing.prompt_id(dataset, messages)
    ("dataset", pa.string(), False),
    ("split_hint", pa.string(), True),  # a split the source assigned (train/test), if any
    ("task", pa.string(), False),  # key into tracebank.tasks.TASKS
    ("messages", MESSAGES, False),  # the question as chat messages
    ("reference", pa.string(), True),  # gold answer text, as the source gave it
    ("source", pa.string(), False),  # where the row came from (file path or builder)
    ("source_id", pa.string(), False),  # the row's own id in its source, for joining labels back
    ("meta", pa.string(), True),  # JSON of the source's unmapped fields, kept verbatim
    ("imported_at", TIMESTAMP, False),
    ("origin", pa.string(), True),  # how a generated prompt was made, e.g. promptmix:numbers; null: imported
    ("parents", pa.list_(pa.string()), True),  # prompt_ids a generated prompt was made from
)

TRACES = _schema(
    ("trace_id", pa.string(), False),
    ("prompt_id", pa.string(), False),
    ("dataset", pa.string(), False),
    ("policy", pa.string(), False),  # teacher | student
    ("model", pa.string(), False),
    ("backend", pa.string(), False),  # transformers | openai | vllm | replay | import
    ("strategy", pa.string(), False),  # sampling strategy of the plan that produced it
    ("sample_idx", pa.int32(), False),
    ("params", PARAMS, True),
    ("request_key", pa.string(), True),  # request cache key; null for imported traces
    ("rationale", pa.string(), True),  # the full completion text
    ("answer", pa.string(), True),  # the task's parse() of the rationale
    ("finish_reason", pa.string(), True),  # stop | length | error:<reason>
    ("prompt_tokens", pa.int64(), True),
    ("completion_tokens", pa.int64(), True),
    ("cost_usd", pa.float64(), True),
    ("latency_s", pa.float64(), True),
    ("build_run", pa.string(), False),  # run_id of the build or import that wrote it
    ("source_id", pa.string(), True),  # imported traces: the source row's id
    ("meta", pa.string(), True),  # imported traces: JSON of the source's unmapped fields
    ("created_at", TIMESTAMP, False),
    ("round", pa.int32(), True),  # closed-loop round that asked for it (tracebank round); null outside rounds
    ("hinted", pa.bool_(), True),  # the teacher saw the reference answer as a hint (rationalization)
    ("lineage", pa.string(), True),  # JSON: how a closed-loop trace was asked for (student, eval_run, feedback)
)

SCORES = _schema(
    ("trace_id", pa.string(), False),
    ("dataset", pa.string(), False),
    ("filter", pa.string(), False),
    ("metric", pa.string(), False),
    ("value", pa.float64(), True),
    ("detail", pa.string(), True),  # a metric's text value, e.g. the extracted answer
    ("passed", pa.bool_(), True),
    ("reason", pa.string(), True),
    ("filter_version", pa.string(), False),
    ("run_id", pa.string(), False),
    ("scored_at", TIMESTAMP, False),
)

DECISIONS = _schema(
    ("dataset", pa.string(), False),
    ("version", pa.int32(), False),
    ("trace_id", pa.string(), False),
    ("prompt_id", pa.string(), False),
    ("keep", pa.bool_(), False),
    ("rule", pa.string(), False),  # the policy rule that decided
    ("reason", pa.string(), False),
    ("split", pa.string(), False),
    ("rank", pa.int32(), True),  # kept by the rules: the order it filled its prompt's quota (order_by or select)
)

RELEASES = _schema(
    ("dataset", pa.string(), False),
    ("version", pa.int32(), False),
    ("snapshot_id", pa.int64(), False),  # the DuckLake snapshot this release committed
    ("message", pa.string(), False),
    ("policy_name", pa.string(), False),
    ("policy", pa.string(), False),  # the policy YAML text as given
    ("config", pa.string(), False),  # JSON of the parsed policy and options
    ("inputs_digest", pa.string(), False),  # digest of the traces and scores it read
    ("decisions_digest", pa.string(), False),  # digest of policy + decisions: equal means no new release
    ("git_sha", pa.string(), True),
    ("code_version", pa.string(), False),
    ("teachers", pa.list_(pa.string()), False),
    ("counts", pa.list_(COUNT), False),
    ("created_at", TIMESTAMP, False),
)

RUNS = _schema(
    ("run_id", pa.string(), False),
    ("stage", pa.string(), False),  # import | build | score | curate | train
    ("dataset", pa.string(), False),
    ("started_at", TIMESTAMP, False),
    ("finished_at", TIMESTAMP, False),
    ("config", pa.string(), False),  # JSON of the stage's config
    ("counters", pa.list_(COUNTER), False),
    ("git_sha", pa.string(), True),
    ("code_version", pa.string(), False),
)

CHUNKS = _schema(
    ("trace_id", pa.string(), False),
    ("dataset", pa.string(), False),
    ("chunk_idx", pa.int32(), False),
    ("text", pa.string(), False),
    ("char_start", pa.int64(), False),  # span of the chunk in the trace's rationale
    ("char_end", pa.int64(), False),
    (
        "kind",
        pa.string(),
        False,
    ),  # restate | reasoning | compute | verify | summary | answer (filters.chunking.chunk_kinds)
    ("score", pa.float64(), True),  # 0..1: share of its arithmetic steps that are right; 0 for a repeat
    ("scorer", pa.string(), True),  # the filter and version that made it, e.g. chunking/1
    ("run_id", pa.string(), False),
    ("tokens", pa.int32(), True),  # words and punctuation marks (the chunk budget's measure)
    ("checked_steps", pa.int32(), True),  # arithmetic steps checked in the chunk
    ("wrong_steps", pa.int32(), True),
    ("redundant_of", pa.int32(), True),  # chunk_idx of the earlier chunk of the trace it repeats
    ("boilerplate", pa.bool_(), True),  # its text is a chunk for many questions
    ("features", pa.string(), True),  # JSON: what decided the kind (rule, cues, similarities)
)

EMBEDDINGS = _schema(
    ("trace_id", pa.string(), False),
    ("dataset", pa.string(), False),
    ("model", pa.string(), False),  # the embedding model's name
    ("dim", pa.int32(), False),  # length of every vector of this model (DuckLake stores lists, not fixed arrays)
    ("text_digest", pa.string(), False),  # xxh128 of the embedded text: a changed text is embedded again
    ("vector", pa.list_(pa.float32()), False),  # unit length
    ("run_id", pa.string(), False),
)

METRICS = _schema(
    ("dataset", pa.string(), False),
    ("version", pa.int32(), False),
    ("split", pa.string(), False),  # a split of the release, or 'all' (kept traces) / 'input' (every trace)
    ("metric", pa.string(), False),  # e.g. distinct_2, answer_entropy, dup_cluster_size, strategy_kept
    ("key", pa.string(), True),  # a histogram bucket, strategy or benchmark; null for a single number
    ("value", pa.float64(), True),
)

PAIRS = _schema(
    ("pair_id", pa.string(), False),  # hash of (chosen, rejected)
    ("dataset", pa.string(), False),
    ("version", pa.int32(), False),  # the release whose kept traces supplied the chosen side
    ("split", pa.string(), False),
    ("prompt_id", pa.string(), False),
    ("chosen_trace_id", pa.string(), False),
    ("rejected_trace_id", pa.string(), False),
    ("kind", pa.string(), False),  # e.g. teacher_vs_student, correct_vs_wrong
    ("margin", pa.float64(), True),
    ("run_id", pa.string(), False),
    ("created_at", TIMESTAMP, False),
)

EVALS = _schema(
    ("eval_run", pa.string(), False),
    ("dataset", pa.string(), False),
    ("version", pa.int32(), True),  # the release evaluated on; null for prompts chosen by split hint
    ("split", pa.string(), False),  # the release's split, or the prompts' split hint
    ("student", pa.string(), False),  # model name or path that was evaluated
    ("prompt_id", pa.string(), False),
    ("completion", pa.string(), True),
    ("answer", pa.string(), True),
    ("correct", pa.int8(), True),  # the task's verdict; null when it cannot verify
    ("reason", pa.string(), False),  # the verdict's reason (correct, mismatch, no_answer, timeout, ...)
    ("completion_tokens", pa.int64(), True),
    ("created_at", TIMESTAMP, False),
    ("round", pa.int32(), True),  # closed-loop round the eval belongs to; null outside rounds
)

BENCHMARKS = _schema(
    ("name", pa.string(), False),  # what scores and `tracebank benchmark list` call it
    ("source", pa.string(), False),  # absolute path of the registered file, read again at score time
    ("text_fields", pa.list_(pa.string()), False),  # fields whose text is checked, each on its own
    ("id_field", pa.string(), True),  # the item id's field; null: "<name>:<row number>"
    ("items", pa.int64(), False),
    ("digest", pa.string(), False),  # xxh128 of the file's bytes: a changed file is refused at score time
    ("registered_at", TIMESTAMP, False),
)

TABLES: dict[str, pa.Schema] = {
    "prompts": PROMPTS,
    "traces": TRACES,
    "scores": SCORES,
    "decisions": DECISIONS,
    "releases": RELEASES,
    "runs": RUNS,
    "chunks": CHUNKS,
    "pairs": PAIRS,
    "evals": EVALS,
    "embeddings": EMBEDDINGS,
    "metrics": METRICS,
    "benchmarks": BENCHMARKS,
}

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT",
    pa.bool_(): "BOOLEAN",
    pa.int8(): "TINYINT",
    TIMESTAMP: "TIMESTAMPTZ",
}


def duckdb_type(dtype: pa.DataType) -> str:
    """The DuckDB column type for an Arrow type used in these schemas."""
    if dtype in _DUCKDB_TYPES:
        return _DUCKDB_TYPES[dtype]
    if pa.types.is_list(dtype):
        return duckdb_type(dtype.value_type) + "[]"
    if pa.types.is_struct(dtype):
        fields = ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in dtype)
        return f"STRUCT({fields})"
    raise TypeError(f"no DuckDB type for {dtype}")


def create_table_sql(qualified_name: str, schema: pa.Schema) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with one column per schema field, in order."""
    columns = ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {qualified_name} ({columns})"


def now() -> datetime:
    return datetime.now(UTC)


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table from row dicts; every field of ``schema`` must be present in every row."""
    rows = list(rows)
    for row in rows[:1]:
        missing = [name for name in schema.names if name not in row]
        if missing:
            raise TypeError(f"rows lack columns {missing} of {schema.names}")
    return pa.Table.from_pylist(rows, schema=schema)


def with_constants(table: pa.Table, **values: str) -> pa.Table:
    """``table`` with a string column per keyword, the same value on every row (e.g. dataset, run_id)."""
    for name, value in values.items():
        table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    return table


def conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """Select and cast ``table`` to ``schema``; a missing column or a null in a required one fails."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise TracebankError(f"{what}: missing columns {missing}")
    table = table.select(schema.names)
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise TracebankError(f"{what}: column {field.name!r} has nulls but is required")
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
        raise TracebankError(f"{what}: columns do not match the schema ({error})") from None
