"""Semantic duplicates: rationales whose embeddings are nearly parallel (SemDeDup, Abbas et al., 2023).

Each rationale is embedded once (``filters.diversity.embeddings``: stored vectors are reused while the text
is unchanged) and compared by cosine similarity within its scope: ``prompt`` compares the traces
of one question (questions matched by normalised text, as ``exact_dup`` does), ``dataset`` all
traces, after k-means has split them into partitions so that only traces of one partition are
compared (SemDeDup's approximation: a pair split across partitions is missed). Similarities are
computed block by block, never as one n x n matrix.

Pairs at or above ``threshold`` form clusters with a stated representative (``filters.diversity.clusters``:
correct first, then the shortest rationale, then trace_id); every other member is a
``semantic_duplicate``. Metrics: ``is_semantic_dup``, ``cluster_id`` (the representative's
trace_id), ``cluster_size``, ``duplicate_of`` (the representative, for duplicates) and
``similarity`` (to the earlier member it joined, for duplicates). A trace with no rationale (null
or blank) is not embedded and not judged: reason ``no_rationale``, passed and metrics null.

With ``same_answer`` (the default) two traces are duplicates only if their extracted answers are
equal too: two rationales that reach different answers say different things, however close their
vectors. The default threshold, 0.95, is measured on GSM8K's 100 labeled questions x 4 GPT-3
solutions (all-MiniLM-L6-v2): different solutions of one question already have a median cosine of
0.89, since they share the question's numbers and nouns, and pairs that reach different final
answers score up to 0.98 (half of the pairs above 0.95 reach different answers; the answer check
removes them, and three in four of the rest are the same steps reworded); restyled copies
(calculator annotations dropped, a "Let's think step by step" preamble) score 0.96-0.99. Rewording
every sentence of a solution gives 0.72-0.95, which this model cannot tell from a different solution
at any threshold. Solutions of different questions stay below 0.84, so scope ``dataset`` finds only
copies across questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from tracebank.errors import TracebankError, check_at_least
from tracebank.filters.diversity.clusters import Clusters, leader_clusters, representative_order
from tracebank.filters.diversity.embeddings import (
    BATCH_SIZE,
    DEFAULT_MODEL,
    StoredVectors,
    check_model,
    reuse_or_embed,
    stored_vectors,
)
from tracebank.filters.diversity.exact import question_text
from tracebank.filters.diversity.text import normalized

if TYPE_CHECKING:
    from tracebank.catalog import Catalog

SCOPES = ("prompt", "dataset")
TRACES_PER_CLUSTER = 2000  # the default k-means partition size for scope=dataset
MAX_CLUSTERS = 1024
BLOCK = 2048  # rows per side of one similarity block: 2048 x 2048 float32 is 16 MiB
TOLERANCE = 1e-6  # float32 rounding: identical texts must still pass threshold 1.0
NO_VECTORS = StoredVectors([], [], np.zeros((0, 0), np.float32))


@dataclass(frozen=True)
class Options:
    model: str = DEFAULT_MODEL  # a name in diversity.embeddings.MODELS, or a local sentence-transformers directory
    threshold: float = 0.95  # cosine similarity at or above which two rationales are duplicates
    same_answer: bool = True  # only traces with the same extracted answer can be duplicates
    scope: str = "prompt"  # "prompt": compare traces of one question; "dataset": all traces
    batch_size: int = BATCH_SIZE  # texts per embedding batch
    clusters: int | None = None  # k-means partitions for scope=dataset; None: one per ~2,000 traces (≤ 1,024)
    seed: int = 0  # k-means seed: the same data and seed give the same partitions

    def __post_init__(self) -> None:
        check_model(self.model)
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise TracebankError(f"threshold must be a cosine similarity in (0, 1], got {threshold!r}")
        if self.scope not in SCOPES:
            raise TracebankError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        for name in ("batch_size", "clusters", "seed"):
            value = getattr(self, name)
            if (value is not None or name != "clusters") and (isinstance(value, bool) or not isinstance(value, int)):
                raise TracebankError(f"{name} must be a whole number, got {value!r}")
        check_at_least(self, 1, "batch_size", "clusters")
        check_at_least(self, 0, "seed")
        if not isinstance(self.same_answer, bool):
            raise TracebankError(f"same_answer must be true or false, got {self.same_answer!r}")
        if self.clusters is not None and self.scope != "dataset":
            raise TracebankError("clusters partitions scope 'dataset' only; drop it or set scope: dataset")


def default_clusters(n: int) -> int:
    return max(1, min(MAX_CLUSTERS, n // TRACES_PER_CLUSTER))


def partitions(matrix: np.ndarray, clusters: int, seed: int) -> list[np.ndarray]:
    """Row positions of ``matrix`` split into ``clusters`` k-means partitions (one group when 1)."""
    n = len(matrix)
    clusters = min(clusters, n)
    if clusters <= 1:
        return [np.arange(n)]
    from sklearn.cluster import MiniBatchKMeans

    kmeans = MiniBatchKMeans(n_clusters=clusters, random_state=seed, n_init=3, batch_size=4096)
    labels = kmeans.fit_predict(matrix)
    return [np.flatnonzero(labels == label) for label in np.unique(labels)]


def question_groups(table: pa.Table) -> list[np.ndarray]:
    """Row positions of ``table`` grouped by the normalised text of their question."""
    keys = pl.from_arrow(table.select(["messages"])).select(key=normalized(question_text(pl.col("messages"))))
    grouped = keys.with_row_index("position").group_by("key", maintain_order=True).agg(pl.col("position"))
    return [np.asarray(positions, np.int64) for positions in grouped["position"].to_list()]


def _blocks(members: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of row-position blocks covering every unordered pair of ``members`` (diagonal blocks included)."""
    for start in range(0, len(members), BLOCK):
        for other in range(start, len(members), BLOCK):
            yield members[start : start + BLOCK], members[other : other + BLOCK]


def similar_pairs(
    matrix: np.ndarray, groups: list[np.ndarray], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, cosine) of every pair of rows within one group whose cosine reaches ``threshold``."""
    lefts, rights, sims = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for members in groups:
        if len(members) < 2:
            continue
        for rows, cols in _blocks(np.sort(members)):  # sorted: a block's rows precede its columns
            block = matrix[rows] @ matrix[cols].T
            i, j = np.nonzero(block >= threshold - TOLERANCE)
            keep = rows[i] < cols[j]  # each unordered pair once, no self-pairs
            lefts.append(rows[i][keep])
            rights.append(cols[j][keep])
            sims.append(np.minimum(block[i, j][keep], 1.0))
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(sims)


class SemanticDuplicate:
    name = "semantic_dup"
    version = "1"
    reads = ("trace_id", "prompt_id", "messages", "rationale", "answer", "correct")
    Options = Options

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        self._stored = NO_VECTORS
        self._new_rows: pa.Table | None = None

    def prepare(self, cat: Catalog, dataset: str) -> None:
        """Read the stored vectors of this model, so unchanged rationales are not embedded again."""
        self._stored = stored_vectors(cat, dataset, self.options.model)

    def outputs(self) -> dict[str, pa.Table]:
        """The vectors embedded by the last ``score`` call, for the ``embeddings`` table."""
        return {"embeddings": self._new_rows} if self._new_rows is not None and self._new_rows.num_rows else {}

    def score(self, table: pa.Table) -> pa.Table:
        self._new_rows = None
        rationales = pl.Series(table.column("rationale"))
        judged = table.filter(pa.array((rationales.str.strip_chars().str.len_chars() > 0).fill_null(False)))
        clusters = self._clusters(judged) if judged.num_rows else None
        return self._result(table, judged, clusters)

    def _clusters(self, judged: pa.Table) -> Clusters:
        options = self.options
        matrix, self._new_rows = reuse_or_embed(
            self._stored,
            options.model,
            judged.column("trace_id").to_pylist(),
            judged.column("rationale").to_pylist(),
            progress="embedding rationales",
            batch_size=options.batch_size,
        )
        if options.scope == "prompt":
            groups = question_groups(judged)
        else:
            groups = partitions(matrix, options.clusters or default_clusters(len(matrix)), options.seed)
        left, right, sims = similar_pairs(matrix, groups, options.threshold)
        if options.same_answer:
            answers = np.asarray(judged.column("answer").to_pylist(), dtype=object)
            agree = answers[left] == answers[right]  # None == None: two traces with no answer may agree
            left, right, sims = left[agree], right[agree], sims[agree]
        return leader_clusters(representative_order(judged), left, right, sims)

    @staticmethod
    def _result(table: pa.Table, judged: pa.Table, clusters: Clusters | None) -> pa.Table:
        ids = pl.Series("trace_id", judged.column("trace_id"), pl.String)
        if clusters is None:
            clusters = Clusters(np.zeros(0, np.int64), np.zeros(0))
        is_dup = clusters.leader != np.arange(len(ids))
        scored = pl.DataFrame({
            "trace_id": ids,
            "is_semantic_dup": pl.Series(is_dup, dtype=pl.Int8),
            "cluster_id": ids.gather(clusters.leader),
            "cluster_size": pl.Series(clusters.size(), dtype=pl.Int64),
            "similarity": pl.Series(np.round(clusters.similarity, 4), dtype=pl.Float64).fill_nan(None),
        })  # fmt: skip
        every = pl.DataFrame({"trace_id": pl.Series(table.column("trace_id"), dtype=pl.String)})
        dup = pl.col("is_semantic_dup")
        out = every.join(scored, on="trace_id", how="left").select(
            "trace_id",
            "is_semantic_dup",
            "cluster_id",
            "cluster_size",
            duplicate_of=pl.when(dup == 1).then(pl.col("cluster_id")),
            similarity="similarity",
            passed=dup == 0,
            reason=pl.when(dup.is_null())
            .then(pl.lit("no_rationale"))
            .when(dup == 1)
            .then(pl.lit("semantic_duplicate"))
            .otherwise(pl.lit("unique")),
        )
        return out.sort("trace_id").to_arrow()
