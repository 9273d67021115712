"""Input tables for the safety scorers' tests: one trace per (prompt, rationale) row."""

from __future__ import annotations

import pyarrow as pa

from tracebank import records

SCHEMA = pa.schema(
    [("trace_id", pa.string()), ("task", pa.string()), ("messages", records.MESSAGES), ("rationale", pa.string())]
)


def traces(rows: list[tuple[str, str | None]], tasks: list[str] | None = None) -> pa.Table:
    """Traces ``t0``, ``t1``, ... answering their prompts with these rationales (tasks: all ``math``)."""
    return pa.table(
        {
            "trace_id": [f"t{i}" for i in range(len(rows))],
            "task": tasks or ["math"] * len(rows),
            "messages": [[{"role": "user", "content": q}] for q, _ in rows],
            "rationale": [r for _, r in rows],
        },
        schema=SCHEMA,
    )


def named_traces(rows: dict[str, tuple[str, str | None]]) -> pa.Table:
    """``traces`` with each row's trace_id its key."""
    return traces(list(rows.values())).set_column(0, "trace_id", pa.array(list(rows), pa.string()))
