"""``tracebank score``: run filters over a dataset's traces and store what changed.

Every run scores all of the dataset's traces (set-level filters such as duplicates need the
whole group), compares the result with the stored scores, and in one commit replaces only the
(trace, filter) rows whose values, reasons or filter version changed. A rerun on unchanged data
writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import polars as pl

from tracebank import catalog as catalog_mod
from tracebank import provenance, records
from tracebank.errors import TracebankError
from tracebank.filters.base import Scorer, check_reads, to_scores
from tracebank.filters.consistency import SelfConsistency
from tracebank.filters.correctness import Correctness
from tracebank.filters.duplicates import ExactDuplicate

FILTERS: dict[str, Callable[[], Scorer]] = {
    "correctness": Correctness,
    "exact_dup": ExactDuplicate,
    "self_consistency": SelfConsistency,
}
DEFAULT_FILTERS = ("correctness", "exact_dup")

INPUT_SQL = """
SELECT t.trace_id, t.prompt_id, t.policy, t.model, t.strategy, t.rationale, t.answer, t.finish_reason,
       p.task, p.messages, p.reference
FROM traces t JOIN prompts p ON p.prompt_id = t.prompt_id
WHERE t.dataset = ?
ORDER BY t.trace_id
"""
VALUE_COLUMNS = ["metric", "value", "detail", "passed", "reason", "filter_version"]


@dataclass(frozen=True)
class ScoreConfig:
    dataset: str
    filters: tuple[str, ...] = DEFAULT_FILTERS

    def __post_init__(self) -> None:
        if not self.filters:
            raise TracebankError("name at least one filter")
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            raise TracebankError(f"unknown filter {unknown[0]!r}; choose from {', '.join(FILTERS)}")


@dataclass(frozen=True)
class FilterStats:
    filter: str
    traces: int
    passed: int
    failed: int
    unjudged: int
    changed: int  # traces whose stored scores this run replaced


@dataclass(frozen=True)
class ScoreResult:
    dataset: str
    filters: list[FilterStats]
    snapshot: int | None
    run_id: str


def _fingerprints(scores: pl.DataFrame) -> pl.DataFrame:
    """One string per (trace_id, filter) that changes whenever any stored value would."""
    row = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\x00") for c in VALUE_COLUMNS], separator="\x1f")
    return (
        scores.with_columns(row=row)
        .group_by("trace_id", "filter")
        .agg(fingerprint=pl.col("row").sort().str.join("\x1e"))
    )


def _changed(new: pl.DataFrame, old: pl.DataFrame) -> pl.DataFrame:
    """(trace_id, filter) pairs whose new scores differ from the stored ones (or are new)."""
    joined = _fingerprints(new).join(_fingerprints(old), on=["trace_id", "filter"], how="left", suffix="_old")
    return joined.filter(
        pl.col("fingerprint_old").is_null() | (pl.col("fingerprint") != pl.col("fingerprint_old"))
    ).select("trace_id", "filter")


def _stats(name: str, scores: pl.DataFrame, changed: pl.DataFrame) -> FilterStats:
    per_trace = scores.filter(pl.col("filter") == name).group_by("trace_id").agg(pl.col("passed").first())
    return FilterStats(
        filter=name,
        traces=per_trace.height,
        passed=per_trace.filter(pl.col("passed") == True).height,  # noqa: E712 (polars expression)
        failed=per_trace.filter(pl.col("passed") == False).height,  # noqa: E712
        unjudged=per_trace.filter(pl.col("passed").is_null()).height,
        changed=changed.filter(pl.col("filter") == name).height,
    )


def score(location: catalog_mod.CatalogLocation, cfg: ScoreConfig) -> ScoreResult:
    """Score every trace of ``cfg.dataset`` with each filter; store only what changed."""
    started_at, run_id = records.now(), provenance.new_run_id("score")
    scorers = [FILTERS[name]() for name in cfg.filters]
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(cfg.dataset)
        inputs = cat.arrow(INPUT_SQL, [cfg.dataset])
    for scorer in scorers:
        check_reads(scorer, inputs)
    new = pl.concat(
        [pl.from_arrow(to_scores(s, s.score(inputs.select(list(s.reads))), cfg.dataset, run_id, started_at)) for s in scorers]
    ) if inputs.num_rows else pl.from_arrow(records.SCORES.empty_table())  # fmt: skip
    marks = ",".join("?" * len(cfg.filters))
    with catalog_mod.writing(
        location, f"score {cfg.dataset} with {', '.join(cfg.filters)}", {"stage": "score", "run_id": run_id}
    ) as writer:
        old_sql = (
            f"SELECT trace_id, filter, {', '.join(VALUE_COLUMNS)} FROM scores WHERE dataset = ? AND filter IN ({marks})"
        )
        old = pl.from_arrow(writer.arrow(old_sql, [cfg.dataset, *cfg.filters]))
        changed = _changed(new, old)
        stats = [_stats(name, new, changed) for name in cfg.filters]
        if changed.height:
            writer.con.register("_changed", changed.to_arrow())
            writer.execute(
                "DELETE FROM scores WHERE dataset = ? AND (trace_id, filter) IN (SELECT (trace_id, filter) FROM _changed)",
                [cfg.dataset],
            )
            writer.insert("scores", new.join(changed, on=["trace_id", "filter"], how="semi").to_arrow())
            counters = {f"{s.filter}_{k}": v for s in stats for k, v in asdict(s).items() if k != "filter"}
            writer.insert("runs", provenance.run_row(run_id, "score", cfg.dataset, started_at, asdict(cfg), counters))
    return ScoreResult(cfg.dataset, stats, writer.snapshot, run_id)
