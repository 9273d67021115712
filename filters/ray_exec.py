"""``tracebank score --executor ray``: the per-trace filters on Ray Data, over Parquet shards.

The driver reads the scorer input once (``runner.INPUT_SQL``), as the local executor does, and
writes it as Parquet shards to a temporary directory inside the catalog (a cluster's workers see
it when the catalog is on shared storage). Ray Data reads the shards
(``ray.data.read_parquet``) and ``map_batches`` runs every filter of :data:`ROW_LOCAL` on each
batch: those judge a trace by its own row, so any split of the rows gives the same scores. Every
other filter needs the whole population (duplicates, propagation, self-consistency, dataset-relative
z-scores, stored embeddings) and runs on the driver, in the configured order, with the same
``correct`` column the local executor would give it. The scores then go through the runner's
one commit, so the stored rows are the local executor's, value for value.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tracebank import ray_cluster, records
from tracebank.filters.base import Scorer, make_scorer, to_scores
from tracebank.filters.runner import FILTERS, ScoreConfig, _with_correct

# Filters whose verdict on a trace reads only that trace's row (and have no prepare/outputs hooks).
ROW_LOCAL = frozenset({"correctness", "insecure_code", "links", "phishing", "pii"})
SHARD_ROWS = 50_000  # rows per Parquet shard: the unit Ray reads in parallel
BATCH_ROWS = 4096  # rows per map_batches call


def runs_on_ray(scorer: Scorer) -> bool:
    """Whether ``scorer`` is sent to the Ray workers (else it runs on the driver over all rows)."""
    return scorer.name in ROW_LOCAL and not hasattr(scorer, "prepare") and not hasattr(scorer, "outputs")


def run_scorers_on_ray(
    scorers: list[Scorer], inputs: pa.Table, cfg: ScoreConfig, run_id: str, started_at: datetime, home: Path
) -> pl.DataFrame:
    """The long-form scores of every scorer, as ``runner._run_scorers`` returns them, the row-local ones from Ray."""
    remote = [s.name for s in scorers if runs_on_ray(s)]
    scored = _score_on_ray(remote, inputs, cfg, run_id, started_at, home) if remote else None
    parts = []
    for scorer in scorers:
        if scorer.name in remote:
            part = scored.filter(pl.col("filter") == scorer.name)
        else:
            part = pl.from_arrow(to_scores(scorer, scorer.score(inputs.select(list(scorer.reads))), cfg.dataset,
                                           run_id, started_at))  # fmt: skip
        if scorer.name == "correctness":  # later filters see this run's verdicts, as in the local executor
            inputs = _with_correct(inputs, _verdicts(part))
        parts.append(part)
    return pl.concat(parts)


def _verdicts(correctness: pl.DataFrame) -> pa.Table:
    """(trace_id, correct) back from correctness's long-form scores."""
    rows = correctness.filter(pl.col("metric") == "correct")
    return rows.select("trace_id", correct=pl.col("value").cast(pl.Int8)).to_arrow()


def _score_on_ray(
    names: list[str], inputs: pa.Table, cfg: ScoreConfig, run_id: str, started_at: datetime, home: Path
) -> pl.DataFrame:
    """Scores of the filters ``names``: input shards written under ``home``, read and scored by Ray Data."""
    columns = sorted({c for name in names for c in FILTERS[name].reads})
    options = {name: cfg.options.get(name) for name in names}
    home.mkdir(parents=True, exist_ok=True)
    shards = Path(tempfile.mkdtemp(prefix=f"ray-score-{run_id}-", dir=home))
    try:
        for number, start in enumerate(range(0, inputs.num_rows, SHARD_ROWS)):
            pq.write_table(inputs.select(columns).slice(start, SHARD_ROWS), shards / f"part-{number:05d}.parquet")
        with ray_cluster.session(cfg.ray_address) as ray:
            dataset = ray.data.read_parquet(str(shards)).map_batches(
                score_batch,
                batch_format="pyarrow",
                batch_size=BATCH_ROWS,
                fn_kwargs={"options": options, "dataset": cfg.dataset, "run_id": run_id, "started_at": started_at},
            )
            tables = ray.get(dataset.to_arrow_refs())
    finally:
        shutil.rmtree(shards, ignore_errors=True)
    tables = [records.conform(t, records.SCORES, "scores from Ray") for t in tables if t.num_rows]
    return pl.from_arrow(pa.concat_tables(tables) if tables else records.SCORES.empty_table())


def score_batch(
    batch: pa.Table, options: dict[str, dict[str, Any] | None], dataset: str, run_id: str, started_at: datetime
) -> pa.Table:
    """One batch of input rows scored by each filter of ``options`` (runs in a Ray worker)."""
    parts = []
    for name, settings in options.items():
        scorer = make_scorer(FILTERS[name], settings)
        parts.append(to_scores(scorer, scorer.score(batch.select(list(scorer.reads))), dataset, run_id, started_at))
    return pa.concat_tables(parts)
