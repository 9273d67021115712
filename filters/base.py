"""The filter contract: a scorer is a pure function over an Arrow table of traces.

``score(table)`` returns one row per input trace with ``trace_id``, the scorer's metric columns
(numbers, or text such as an extracted answer), ``passed`` (bool, null when the scorer cannot
judge) and a ``reason`` string. Scorers never drop rows: dropping happens in one place, the
curation policy, so every dropped trace stays queryable with why.

Three optional hooks, for scorers that need them (the runner looks for each by name):

- ``Options``: a frozen dataclass of the scorer's settings, validated in ``__post_init__``. Such a
  scorer is made as ``Scorer(Options(**values))``; settings that differ from the defaults are part
  of its stored ``filter_version`` (see :func:`stored_version`), so a rerun with other settings
  replaces the scores it changes and every score says what made it.
- ``prepare(cat, dataset)``: read what the scorer reuses from the catalog (stored embeddings,
  registered benchmarks) before ``score`` runs.
- ``outputs() -> dict[str, pa.Table]``: rows for other catalog tables (``chunks``,
  ``embeddings``) from the last ``score`` call, keyed by ``trace_id``; the runner writes the rows of
  traces whose rows changed, in the same commit as the scores.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from tracebank import records
from tracebank.config import make
from tracebank.errors import TracebankError
from tracebank.hashing import digest

RESERVED = ("trace_id", "passed", "reason")


class Scorer(Protocol):
    name: str  # the filter name stored in scores.filter
    version: str  # bump when the scoring rule changes: stored rows then count as changed
    reads: tuple[str, ...]  # input columns it needs, checked before it runs

    def score(self, table: pa.Table) -> pa.Table: ...


def make_scorer(cls: type, options: dict[str, Any] | None = None) -> Scorer:
    """An instance of scorer class ``cls`` with ``options`` (checked against its ``Options`` fields)."""
    options_type = getattr(cls, "Options", None)
    if options_type is None:
        if options:
            raise TracebankError(f"filter {cls.name!r} takes no options, got {', '.join(sorted(options))}")
        return cls()
    return cls(make(options_type, dict(options or {}), f"filter {cls.name!r} options"))


def changed_options(scorer: Scorer) -> dict[str, Any]:
    """The scorer's settings that differ from its defaults."""
    options = getattr(scorer, "options", None)
    if options is None:
        return {}
    defaults = type(options)()
    return {
        f.name: getattr(options, f.name)
        for f in fields(options)
        if getattr(options, f.name) != getattr(defaults, f.name)
    }


def stored_version(scorer: Scorer) -> str:
    """``version``, plus a digest of the non-default settings (``2+1a2b3c4d``) when there are any."""
    changed = changed_options(scorer)
    return f"{scorer.version}+{digest(changed)[:8]}" if changed else scorer.version


def check_reads(scorer: Scorer, table: pa.Table) -> None:
    missing = [c for c in scorer.reads if c not in table.column_names]
    if missing:
        raise TracebankError(f"filter {scorer.name!r} needs columns {missing}, which the input lacks")


def to_scores(scorer: Scorer, result: pa.Table, dataset: str, run_id: str, scored_at: datetime) -> pa.Table:
    """Long form for the scores table: one row per (trace_id, metric), sharing passed and reason."""
    for column in RESERVED:
        if column not in result.column_names:
            raise TypeError(f"filter {scorer.name!r} returned no {column!r} column")
    metrics = [c for c in result.column_names if c not in RESERVED]
    version = stored_version(scorer)
    parts = []
    for metric in metrics:
        column = result.column(metric)
        numeric = (
            pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)
        )
        n = result.num_rows
        parts.append(
            pa.table(
                {
                    "trace_id": result.column("trace_id"),
                    "dataset": pa.array([dataset] * n, pa.string()),
                    "filter": pa.array([scorer.name] * n, pa.string()),
                    "metric": pa.array([metric] * n, pa.string()),
                    "value": pc.cast(column, pa.float64()) if numeric else pa.nulls(n, pa.float64()),
                    "detail": pa.nulls(n, pa.string()) if numeric else pc.cast(column, pa.string()),
                    "passed": pc.cast(result.column("passed"), pa.bool_()),
                    "reason": pc.cast(result.column("reason"), pa.string()),
                    "filter_version": pa.array([version] * n, pa.string()),
                    "run_id": pa.array([run_id] * n, pa.string()),
                    "scored_at": pa.array([scored_at] * n, records.TIMESTAMP),
                }
            )
        )
    if not parts:
        raise TypeError(f"filter {scorer.name!r} returned no metric columns")
    return records.conform(pa.concat_tables(parts), records.SCORES, f"scores of {scorer.name}")
