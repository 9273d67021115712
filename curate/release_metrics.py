"""Diversity and contamination metrics of a release, computed from the catalog and stored with it.

Computed in the release's own transaction over its decisions, and stored in the ``metrics`` table
(dataset, version, split, metric, key, value); the data card reads them from there. ``split`` is
a split of the release, ``all`` (every kept trace) or ``input`` (every trace the policy judged).

- ``distinct_1``/``_2``/``_3``: distinct word n-grams over all n-grams of the rationales (normalised
  words as ``filters.diversity.text`` splits them), on a fixed-size sample of up to ``DISTINCT_SAMPLE`` (10,000) traces chosen
  by a hash of their ids: the ratio falls as a corpus grows, so a fixed size keeps releases
  comparable (``distinct_sample`` says how many traces were used).
- ``pairwise_distance``: mean cosine distance between the stored embeddings of traces of the same
  prompt (``key`` the embedding model), averaged over prompts with two or more embedded traces.
- ``answer_entropy``: Shannon entropy (bits) of the extracted answers of a prompt's traces,
  averaged over prompts with two or more answered traces.
- ``dup_cluster_size``: near-duplicate clusters by size (``key`` 1, 2, 3-4, 5-8, 9+), input only.
- ``strategy_traces``: traces per sampling strategy (``key``): which plan variants survived.
- ``contaminated_traces``/``contaminated_prompts``: per benchmark (``key``), from ``decontam``.
- ``safety_flagged``: traces a safety filter flagged (``key`` the filter; ``any``: by at least one), for
  every filter that scored the dataset's traces with a ``flagged`` metric (``filters.safety``).
- ``memorization``: from ``filters.memorization``, quantiles of ``risk`` and ``overlap`` (``key``
  ``risk_p50``, ``_p90``, ``_p99``) and of ``zlib_ratio`` (low is risky: ``zlib_ratio_p1``, ``_p10``,
  ``_p50``; continuous quantiles, as numpy's default), ``scored`` (traces with a risk) and
  ``over_threshold`` (traces whose risk reached the scorer's threshold: ``passed`` false).
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from tracebank import records
from tracebank.filters.diversity.embeddings import DEFAULT_MODEL, stored_vectors
from tracebank.filters.diversity.text import ngram_keys, token_hashes

DISTINCT_SAMPLE = 10_000

# Every trace of the dataset as 'input', and each kept trace as 'all' and as its split.
SCOPED = """
CREATE OR REPLACE TEMP TABLE _scoped AS
WITH decided AS (
    SELECT d.trace_id, d.split, d.keep, t.prompt_id, t.answer, t.strategy
    FROM decisions d JOIN traces t ON t.trace_id = d.trace_id
    WHERE d.dataset = $dataset AND d.version = $version
)
SELECT 'input' AS scope, * EXCLUDE (split, keep) FROM decided
UNION ALL SELECT 'all', * EXCLUDE (split, keep) FROM decided WHERE keep
UNION ALL SELECT split, * EXCLUDE (split, keep) FROM decided WHERE keep
"""

SAMPLE_SQL = f"""
WITH sample AS (
    SELECT scope, trace_id FROM _scoped
    QUALIFY row_number() OVER (PARTITION BY scope ORDER BY hash(trace_id), trace_id) <= {DISTINCT_SAMPLE}
)
SELECT s.scope, t.rationale FROM sample s JOIN traces t USING (trace_id) WHERE t.rationale IS NOT NULL
ORDER BY s.scope, hash(s.trace_id), s.trace_id
"""

ENTROPY_SQL = """
WITH counts AS (
    SELECT scope, prompt_id, answer, count(*) AS n FROM _scoped WHERE answer IS NOT NULL GROUP BY ALL
), prompts AS (  -- entropy of counts n_i summing to N: log2(N) - sum(n_i log2 n_i) / N
    SELECT scope, prompt_id, sum(n) AS answered, sum(n * log2(n)) AS weighted FROM counts GROUP BY ALL
)
SELECT scope, 'answer_entropy', NULL, avg(log2(answered) - weighted / answered)
FROM prompts WHERE answered >= 2 GROUP BY ALL
"""

STRATEGY_SQL = "SELECT scope, 'strategy_traces', strategy, count(*) FROM _scoped GROUP BY ALL"

CLUSTERS_SQL = """
SELECT 'input', 'dup_cluster_size',
       CASE WHEN value <= 1 THEN '1' WHEN value = 2 THEN '2' WHEN value <= 4 THEN '3-4'
            WHEN value <= 8 THEN '5-8' ELSE '9+' END, count(*)
FROM scores
WHERE dataset = $dataset AND filter = 'near_dup' AND metric = 'cluster_size'
  AND trace_id IN (SELECT trace_id FROM scores WHERE dataset = $dataset AND filter = 'near_dup'
                   AND metric = 'is_near_dup' AND value = 0)
GROUP BY ALL
"""

CONTAMINATION_SQL = """
WITH flagged AS (
    SELECT trace_id, detail AS benchmark FROM scores
    WHERE dataset = $dataset AND filter = 'decontam' AND metric = 'benchmark' AND passed = false
)
SELECT s.scope, 'contaminated_traces', f.benchmark, count(*) FROM _scoped s JOIN flagged f USING (trace_id) GROUP BY ALL
UNION ALL
SELECT s.scope, 'contaminated_prompts', f.benchmark, count(DISTINCT s.prompt_id)
FROM _scoped s JOIN flagged f USING (trace_id) GROUP BY ALL
"""

SAFETY_SQL = """
WITH scored AS (
    SELECT trace_id, filter, value FROM scores WHERE dataset = $dataset AND metric = 'flagged'
)
SELECT s.scope, 'safety_flagged', f.filter, count(*) FILTER (WHERE f.value = 1)
FROM _scoped s JOIN scored f USING (trace_id) GROUP BY ALL
UNION ALL
SELECT s.scope, 'safety_flagged', 'any', count(DISTINCT s.trace_id) FILTER (WHERE f.value = 1)
FROM _scoped s JOIN scored f USING (trace_id) GROUP BY ALL
"""

MEMORIZATION_QUANTILES = (("risk", (50, 90, 99)), ("overlap", (50, 90, 99)), ("zlib_ratio", (1, 10, 50)))
MEMORIZATION_SQL = (
    "WITH scored AS (SELECT trace_id, metric, value, passed FROM scores "
    "WHERE dataset = $dataset AND filter = 'memorization' AND value IS NOT NULL)\n"
    + "UNION ALL\n".join(
        f"SELECT s.scope, 'memorization', '{metric}_p{q}', quantile_cont(f.value, {q / 100}) "
        f"FROM _scoped s JOIN scored f USING (trace_id) WHERE f.metric = '{metric}' GROUP BY ALL\n"
        for metric, quantiles in MEMORIZATION_QUANTILES
        for q in quantiles
    )
    + "UNION ALL\nSELECT s.scope, 'memorization', 'scored', count(*) FROM _scoped s JOIN scored f USING (trace_id) "
    "WHERE f.metric = 'risk' GROUP BY ALL\n"
    "UNION ALL\nSELECT s.scope, 'memorization', 'over_threshold', count(*) FILTER (WHERE NOT f.passed) "
    "FROM _scoped s JOIN scored f USING (trace_id) WHERE f.metric = 'risk' GROUP BY ALL"
)


def _distinct(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str | None, float]]:
    """distinct-1/2/3 per scope on its hash sample (word n-grams as ``filters.diversity.text`` makes them)."""
    sample = pl.from_arrow(con.execute(SAMPLE_SQL).to_arrow_table())
    rows = []
    for (scope,), group in sample.group_by("scope", maintain_order=True):
        words = token_hashes(group["rationale"])  # once per scope, for every n
        for n in (1, 2, 3):
            grams = ngram_keys(*words, n)[2]
            if len(grams):
                rows.append((scope, f"distinct_{n}", None, pl.Series(grams).n_unique() / len(grams)))
        rows.append((scope, "distinct_sample", None, float(group.height)))
    return rows


def _pairwise(con: duckdb.DuckDBPyConnection, dataset: str) -> list[tuple[str, str, str, float]]:
    """Mean within-prompt cosine distance of stored embeddings, per scope."""
    stored = stored_vectors(con, dataset, DEFAULT_MODEL)
    if not stored.trace_ids:
        return []
    row_of = {trace_id: i for i, trace_id in enumerate(stored.trace_ids)}
    members = con.execute("SELECT scope, prompt_id, list(trace_id) FROM _scoped GROUP BY ALL").fetchall()
    per_scope: dict[str, list[float]] = {}
    for scope, _, trace_ids in members:
        rows = [row_of[t] for t in trace_ids if t in row_of]
        if len(rows) >= 2:
            vectors = stored.matrix[rows]
            similarity = vectors @ vectors.T
            n = len(rows)
            per_scope.setdefault(scope, []).append(float(1 - (similarity.sum() - np.trace(similarity)) / (n * (n - 1))))
    return [(scope, "pairwise_distance", DEFAULT_MODEL, float(np.mean(v))) for scope, v in per_scope.items()]


def compute(con: duckdb.DuckDBPyConnection, dataset: str, version: int) -> pa.Table:
    """Every metric of release ``dataset@v{version}`` (its decisions must be visible to ``con``)."""
    bind = {"dataset": dataset, "version": version}
    con.execute(SCOPED, bind)
    rows = _distinct(con)
    for sql in (ENTROPY_SQL, STRATEGY_SQL):
        rows += con.execute(sql).fetchall()
    for sql in (CLUSTERS_SQL, CONTAMINATION_SQL, SAFETY_SQL, MEMORIZATION_SQL):
        rows += con.execute(sql, {"dataset": dataset}).fetchall()
    rows += _pairwise(con, dataset)
    con.execute("DROP TABLE _scoped")
    return records.to_table(
        [
            {"dataset": dataset, "version": version, "split": scope, "metric": metric, "key": key, "value": value}
            for scope, metric, key, value in rows
        ],
        records.METRICS,
    )
