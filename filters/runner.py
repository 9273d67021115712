"""``tracebank score``: run filters over a dataset's traces and store what changed.

Every run scores all of the dataset's traces (set-level filters such as duplicates need the
whole group), compares the result with the stored scores, and in one commit replaces only the
(trace, filter) rows whose values, reasons or filter version changed. A rerun on unchanged data
writes nothing. Rows a filter makes for other tables (chunks, embeddings: ``Scorer.outputs``) are
compared and replaced per trace the same way, in the same commit.

Filters run in the order given. Each input row carries ``correct``, the stored correctness
verdict (or this run's, when ``correctness`` runs first), which the duplicate filters use to
choose representatives.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from tracebank import catalog as catalog_mod
from tracebank import provenance, ray_cluster, records
from tracebank.errors import TracebankError
from tracebank.filters.base import Scorer, check_reads, make_scorer, to_scores
from tracebank.filters.chunking.chunking import CHUNK_COLUMNS
from tracebank.filters.safety.safety import FILTER_GROUPS, expand_groups


class FilterRegistry(Mapping[str, type]):
    """Filter name -> its scorer class, imported the first time it is asked for: a run (or a command
    that only names filters) pays for the filters it uses, not for all of them."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths  # name -> "module:Class"

    def __getitem__(self, name: str) -> type:
        module, _, cls = self._paths[name].partition(":")
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


_F = "tracebank.filters."
FILTERS = FilterRegistry({
    "chunking": _F + "chunking.chunking:Chunking",
    "correctness": _F + "correctness.correctness:Correctness",
    "decontam": _F + "contamination.decontam:Decontamination",
    "drift": _F + "safety.drift:Drift",
    "exact_dup": _F + "diversity.exact:ExactDuplicate",
    "hint_leak": _F + "memorization.hint_leak:HintLeak",
    "insecure_code": _F + "safety.insecure_code:InsecureCode",
    "links": _F + "safety.links:Links",
    "memorization": _F + "memorization.memorization:Memorization",
    "near_dup": _F + "diversity.near_dup:NearDuplicate",
    "perplexity": _F + "memorization.perplexity:Perplexity",
    "phishing": _F + "safety.phishing:Phishing",
    "pii": _F + "safety.pii:PII",
    "promotion": _F + "safety.promotion:Promotion",
    "propagation": _F + "safety.propagation:Propagation",
    "self_consistency": _F + "correctness.consistency:SelfConsistency",
    "semantic_dup": _F + "diversity.semantic:SemanticDuplicate",
})  # fmt: skip
DEFAULT_FILTERS = ("correctness", "exact_dup")

INPUT_SQL = """
SELECT t.trace_id, t.prompt_id, t.policy, t.model, t.strategy, t.rationale, t.answer, t.finish_reason,
       t.round, t.hinted, t.lineage,
       p.task, p.messages, p.reference,
       (SELECT CAST(max(s.value) AS TINYINT) FROM scores s
        WHERE s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct') AS correct
FROM traces t JOIN prompts p ON p.prompt_id = t.prompt_id
WHERE t.dataset = ?
ORDER BY t.trace_id
"""
# Other tables a filter may fill (Scorer.outputs): (the key replaced as a whole, the columns compared).
OUTPUT_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "chunks": (("trace_id",), CHUNK_COLUMNS),
    "embeddings": (("trace_id", "model"), ("dim", "text_digest")),
}
VALUE_COLUMNS = ["metric", "value", "detail", "passed", "reason", "filter_version"]
SCORE_KEY = ["trace_id", "filter"]


@dataclass(frozen=True)
class ScoreConfig:
    dataset: str
    filters: tuple[str, ...] = DEFAULT_FILTERS
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # filter -> its settings (Scorer.Options)
    executor: str = "local"  # local | ray: per-trace filters on Ray Data (filters.ray_exec), same scores
    ray_address: str | None = None  # executor ray: a running cluster (default $RAY_ADDRESS, else a local Ray)

    def __post_init__(self) -> None:
        if not self.filters:
            raise TracebankError("name at least one filter")
        ray_cluster.check_executor(self.executor, self.ray_address)
        object.__setattr__(self, "filters", expand_groups(self.filters))  # "safety" -> its scorers
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            choices = ", ".join([*FILTERS, *FILTER_GROUPS])
            raise TracebankError(f"unknown filter {unknown[0]!r}; choose from {choices}")
        if not isinstance(self.options, dict) or not all(isinstance(v, dict) for v in self.options.values()):
            raise TracebankError(
                "filter options must map a filter name to its settings, e.g. {near_dup: {threshold: 0.8}}"
            )
        stray = [name for name in self.options if name not in self.filters]
        if stray:
            raise TracebankError(
                f"options for {stray[0]!r}, which this run does not score; filters: {', '.join(self.filters)}"
            )
        self.scorers()  # every option checked now, before anything is read

    def scorers(self) -> list[Scorer]:
        return [make_scorer(FILTERS[name], self.options.get(name)) for name in self.filters]


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


def _fingerprints(rows: pl.DataFrame, keys: list[str], columns: list[str]) -> pl.DataFrame:
    """One string per key that changes whenever any of its rows' ``columns`` would."""
    row = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\x00") for c in columns], separator="\x1f")
    return rows.with_columns(row=row).group_by(keys).agg(fingerprint=pl.col("row").sort().str.join("\x1e"))


def _changed(
    new: pl.DataFrame, old: pl.DataFrame, keys: list[str] = SCORE_KEY, columns: list[str] = VALUE_COLUMNS
) -> pl.DataFrame:
    """Keys (by default (trace_id, filter)) whose new rows differ from the stored ones, or are new."""
    joined = _fingerprints(new, keys, columns).join(
        _fingerprints(old, keys, columns), on=keys, how="left", suffix="_old"
    )
    return joined.filter(
        pl.col("fingerprint_old").is_null() | (pl.col("fingerprint") != pl.col("fingerprint_old"))
    ).select(keys)


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


def _with_correct(inputs: pa.Table, result: pa.Table) -> pa.Table:
    """``inputs`` with its ``correct`` column replaced by this run's correctness verdicts."""
    verdicts = pl.from_arrow(result.select(["trace_id", "correct"]))
    joined = pl.from_arrow(inputs.select(["trace_id"])).join(verdicts, on="trace_id", how="left", maintain_order="left")
    position = inputs.column_names.index("correct")
    return inputs.set_column(position, "correct", joined["correct"].cast(pl.Int8).to_arrow())


def _run_scorers(scorers: list[Scorer], inputs: pa.Table, cfg: ScoreConfig, run_id: str, started_at) -> pl.DataFrame:
    parts = []
    for scorer in scorers:
        result = scorer.score(inputs.select(list(scorer.reads)))
        if scorer.name == "correctness":
            inputs = _with_correct(inputs, result)
        parts.append(pl.from_arrow(to_scores(scorer, result, cfg.dataset, run_id, started_at)))
    return pl.concat(parts)


def _outputs(scorers: list[Scorer], dataset: str, run_id: str) -> dict[str, pa.Table]:
    """Rows for other tables from every scorer that makes them, conformed to their schemas."""
    tables: dict[str, list[pa.Table]] = {}
    for scorer in scorers:
        for name, table in (scorer.outputs() if hasattr(scorer, "outputs") else {}).items():
            if name not in OUTPUT_TABLES:
                raise TypeError(f"filter {scorer.name!r} returned rows for {name!r}, which filters do not fill")
            table = records.with_constants(table, dataset=dataset, run_id=run_id)
            tables.setdefault(name, []).append(records.conform(table, records.TABLES[name], f"{name} of {scorer.name}"))
    return {name: pa.concat_tables(parts) for name, parts in tables.items()}


def _write_outputs(writer: catalog_mod.Writer, dataset: str, outputs: dict[str, pa.Table]) -> dict[str, int]:
    """Replace the rows of other tables whose compared columns differ from the stored ones; returns keys changed."""
    counts = {}
    for name, table in outputs.items():
        keys, compared = OUTPUT_TABLES[name]
        new = pl.from_arrow(table)
        writer.con.register("_output_ids", new.select("trace_id").unique().to_arrow())
        try:
            old = pl.from_arrow(writer.arrow(
                f"SELECT {', '.join(keys + compared)} FROM {name} "
                "WHERE dataset = ? AND trace_id IN (SELECT trace_id FROM _output_ids)",
                [dataset],
            ))  # fmt: skip
        finally:
            writer.con.unregister("_output_ids")
        changed = _changed(new, old, list(keys), list(compared))
        counts[name] = changed.height
        if changed.height:
            where = f"({', '.join(keys)}) IN (SELECT ({', '.join(keys)}) FROM _output_changed)"
            writer.con.register("_output_changed", changed.to_arrow())
            try:
                writer.execute(f"DELETE FROM {name} WHERE dataset = ? AND {where}", [dataset])
            finally:
                writer.con.unregister("_output_changed")
            writer.insert(name, new.join(changed, on=list(keys), how="semi").to_arrow())
    return counts


def score(location: catalog_mod.CatalogLocation, cfg: ScoreConfig) -> ScoreResult:
    """Score every trace of ``cfg.dataset`` with each filter; store only what changed."""
    started_at, run_id = records.now(), provenance.new_run_id("score")
    scorers = cfg.scorers()
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(cfg.dataset)
        inputs = cat.arrow(INPUT_SQL, [cfg.dataset])
        for scorer in scorers:
            check_reads(scorer, inputs)
            if hasattr(scorer, "prepare"):
                scorer.prepare(cat, cfg.dataset)
    catalog_mod.ensure_writable(location)  # a read-only catalog is refused before the scorers' work, not after
    if not inputs.num_rows:
        new = pl.from_arrow(records.SCORES.empty_table())
    elif cfg.executor == "ray":  # imported here: Ray loads only when a run asks for it
        from tracebank.filters.ray_exec import run_scorers_on_ray

        new = run_scorers_on_ray(scorers, inputs, cfg, run_id, started_at, location.home)
    else:
        new = _run_scorers(scorers, inputs, cfg, run_id, started_at)
    outputs = _outputs(scorers, cfg.dataset, run_id) if inputs.num_rows else {}
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
        output_changes = _write_outputs(writer, cfg.dataset, outputs)
        if changed.height or any(output_changes.values()):
            counters = {f"{s.filter}_{k}": v for s in stats for k, v in asdict(s).items() if k != "filter"}
            counters.update({f"{name}_traces_changed": n for name, n in output_changes.items()})
            writer.insert("runs", provenance.run_row(run_id, "score", cfg.dataset, started_at, asdict(cfg), counters))
    return ScoreResult(cfg.dataset, stats, writer.snapshot, run_id)
