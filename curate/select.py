"""Diverse selection: which of a prompt's allowed traces fill its quota, chosen to differ most.

A policy's ``select: {method: diverse, k: 4}`` ranks, per prompt, the traces its rules keep by
greedy farthest-point order over their rationale embeddings (``filters.diversity.embeddings``): the first is
the best by the policy's ``order_by``; each next one is the trace whose cosine distance to the
nearest already chosen trace is largest (ties: the earlier by ``order_by``). The first ``k`` are
kept; the rank of every kept-by-rule trace is stored with its decision. Vectors are read from the
``embeddings`` table and only missing ones are computed (and stored with the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.diversity.embeddings import DEFAULT_MODEL, check_model, vectors_for

METHODS = ("diverse",)


@dataclass(frozen=True)
class Select:
    method: str = "diverse"
    k: int = 4  # traces kept per prompt
    model: str = DEFAULT_MODEL  # embedding model

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TracebankError(f"select.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise TracebankError(f"select.k must be a positive integer, got {self.k!r}")
        check_model(self.model)


def farthest_point_order(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy farthest-point order of unit-length rows, row 0 first; and each row's distance when picked.

    The distance is 1 - cosine similarity to the nearest row chosen before it (NaN for the first).
    """
    n = len(vectors)
    order, picked_at = np.zeros(n, np.int64), np.full(n, np.nan)
    if n == 0:
        return order, picked_at
    nearest = 1.0 - vectors @ vectors[0]
    chosen = np.zeros(n, bool)
    chosen[0] = True
    for step in range(1, n):
        candidates = np.where(chosen, -np.inf, nearest)
        row = int(np.argmax(candidates))  # argmax takes the first maximum: ties go to the earlier row
        order[step], picked_at[row], chosen[row] = row, max(float(nearest[row]), 0.0), True
        nearest = np.minimum(nearest, 1.0 - vectors @ vectors[row])
    return order, picked_at


RANKS_SCHEMA = pa.schema([("trace_id", pa.string()), ("_rank", pa.int64())])


def select_ranks(con: duckdb.DuckDBPyConnection, dataset: str, select: Select, ruled: str) -> tuple[pa.Table, pa.Table]:
    """Per prompt, the diverse rank of every trace the rules keep in relation ``ruled``.

    Returns (trace_id, _rank) and the embeddings rows made for traces that had none.
    Traces with no rationale rank after every trace that has one.
    """
    frame = pl.from_arrow(
        con.execute(
            f"""SELECT r.trace_id, r.prompt_id, t.rationale FROM {ruled} r JOIN traces t USING (trace_id)
                WHERE r.keep ORDER BY r.prompt_id, r._order, r.trace_id"""
        ).to_arrow_table()
    )
    with_text = frame.filter(pl.col("rationale").is_not_null() & (pl.col("rationale") != ""))
    vectors, new_rows = vectors_for(
        con, dataset, select.model, with_text["trace_id"].to_list(), with_text["rationale"].to_list(),
        progress="embedding for diverse selection",
    )  # fmt: skip
    row_of = dict(zip(with_text["trace_id"].to_list(), range(with_text.height), strict=True))
    ids, ranks = [], []
    for (_,), group in frame.group_by("prompt_id", maintain_order=True):
        members = group["trace_id"].to_list()
        embedded = [t for t in members if t in row_of]
        order, _ = farthest_point_order(vectors[[row_of[t] for t in embedded]])
        ranked = [embedded[i] for i in order] + [t for t in members if t not in row_of]
        ids += ranked
        ranks += range(1, len(ranked) + 1)
    table = pa.table({"trace_id": ids, "_rank": ranks}, schema=RANKS_SCHEMA)
    return table, new_rows


def from_value(value: Any, where: str) -> Select | None:
    """A policy's ``select`` mapping as a :class:`Select` (None stays None)."""
    if value is None or isinstance(value, Select):
        return value
    if not isinstance(value, dict):
        raise TracebankError(f"{where}: select must be a mapping such as {{method: diverse, k: 4}}")
    from tracebank.config import make

    return make(Select, value, f"{where}: select")
