"""Ground truth for ``bench/dedup_throughput.py``: exact shingle Jaccard, and recall/precision of a clustering.

Recall: planted positive pairs (exact Jaccard >= threshold) that the scorer puts in one cluster,
over all planted positive pairs. Precision: predicted duplicate relations (a trace and its
``duplicate_of``) whose exact Jaccard similarity is >= threshold, over all predicted relations.
A planted positive is by definition at or above the threshold, so "true" needs no second rule.
``linked precision`` is looser: a flagged trace counts when some member of its cluster is that
close (a chain A~B~C puts C under A even when C and A themselves are further apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from tracebank.filters.diversity.text import normalized, words

LINKED_CAP = 200  # members of one cluster compared for linked precision


def shingle_sets(texts: list[str] | pa.Array | pa.ChunkedArray, size: int = 3) -> list[frozenset[tuple[str, ...]]]:
    """Each text's set of word ``size``-grams (``filters.diversity.text.words`` tokens); a short text is one gram."""
    tokens = pl.select(words(pl.Series(texts, dtype=pl.String)).alias("tokens"))["tokens"].to_list()
    return [frozenset(tuple(t[i : i + size]) for i in range(max(1, len(t) - size + 1))) for t in tokens]


def jaccard(a: frozenset, b: frozenset) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


class Truth:
    """Exact shingle sets of a corpus's texts, made on demand (a million rows are never all held)."""

    def __init__(self, texts: pa.ChunkedArray, shingle: int = 3):
        self.texts, self.shingle, self.sets = texts, shingle, {}

    def need(self, rows: np.ndarray) -> None:
        missing = [row for row in np.unique(rows).tolist() if row not in self.sets]
        if missing:
            made = shingle_sets(self.texts.take(pa.array(missing, pa.int64())), self.shingle)
            self.sets.update(zip(missing, made, strict=True))

    def similarity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        self.need(np.concatenate([left, right]))
        sets = self.sets
        return np.array([jaccard(sets[a], sets[b]) for a, b in zip(left.tolist(), right.tolist(), strict=True)])


@dataclass(frozen=True)
class Assignment:
    cluster: np.ndarray  # per row: the row of its cluster's representative (itself when alone)
    duplicate_of: np.ndarray  # per row: the row it is a duplicate of, or -1


def _rows(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row positions from corpus trace ids (``t00000042`` is row 42); null is -1."""
    return pl.Series(ids).str.slice(1).cast(pl.Int64).fill_null(-1).to_numpy()


def assignment(result: pa.Table) -> Assignment:
    """From a scorer's trace_id, duplicate_of and (when it has one) cluster_id."""
    rows = _rows(result.column("trace_id"))
    duplicate_of = np.full(rows.max() + 1 if len(rows) else 0, -1, np.int64)
    duplicate_of[rows] = _rows(result.column("duplicate_of"))
    cluster = np.arange(len(duplicate_of))
    if "cluster_id" in result.column_names:
        cluster[rows] = _rows(result.column("cluster_id"))
    else:  # exact_dup names the group's original, which is its own representative
        cluster = np.where(duplicate_of >= 0, duplicate_of, cluster)
    return Assignment(cluster, duplicate_of)


def ceiling(table: pa.Table, truth: Truth, threshold: float) -> Assignment:
    """The scorer's clustering rule over every same-prompt pair at >= threshold, found exactly (no LSH).

    Its recall is the most a scorer with that rule can reach on the prompt scope: a planted pair it
    misses is split by the greedy rule (each trace joins its most similar earlier trace), not lost.
    """
    from tracebank.filters.diversity.clusters import leader_clusters, representative_order

    prompts = pl.Series(table.column("prompt_id")).to_numpy()
    pairs = pl.DataFrame({"prompt": prompts, "row": np.arange(len(prompts))})
    pairs = pairs.join(pairs, on="prompt").filter(pl.col("row") < pl.col("row_right"))
    left, right = pairs["row"].to_numpy(), pairs["row_right"].to_numpy()
    similarity = truth.similarity(left, right)
    close = similarity >= threshold
    clusters = leader_clusters(representative_order(table), left[close], right[close], similarity[close])
    rows = np.arange(len(prompts))
    return Assignment(clusters.leader, np.where(clusters.leader != rows, clusters.leader, -1))


def band_names(threshold: float) -> list[tuple[str, float, float]]:
    t = threshold
    return [(f"[{t:.2f},{t + 0.05:.2f})", t, t + 0.05), (f"[{t + 0.05:.2f},{t + 0.1:.2f})", t + 0.05, t + 0.1),
            (f"[{t + 0.1:.2f},1)", t + 0.1, 1.0), ("1.0", 1.0, 2.0)]  # fmt: skip


def relations(assign: Assignment, sample: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    flagged = np.nonzero(assign.duplicate_of >= 0)[0]
    if sample is not None and len(flagged) > sample:
        flagged = np.sort(np.random.default_rng(seed).choice(flagged, sample, replace=False))
    return flagged, assign.duplicate_of[flagged]


def linked(assign: Assignment, flagged: np.ndarray, truth: Truth, threshold: float) -> float:
    """Flagged traces with some cluster member at >= threshold, over flagged traces."""
    if not len(flagged):
        return 1.0
    order = np.argsort(assign.cluster, kind="stable")
    starts = np.searchsorted(assign.cluster[order], assign.cluster[flagged])
    rows, members = [], []
    for row, start in zip(flagged.tolist(), starts.tolist(), strict=True):
        cluster = order[start : start + LINKED_CAP]
        cluster = cluster[(assign.cluster[cluster] == assign.cluster[row]) & (cluster != row)]
        rows.append(np.full(len(cluster), row)), members.append(cluster)
    left, right = np.concatenate(rows), np.concatenate(members)
    close = left[truth.similarity(left, right) >= threshold]
    return len(np.unique(close)) / len(flagged)


def evaluate(assign: Assignment, planted: dict[str, np.ndarray], truth: Truth, threshold: float,
             kinds: tuple[str, ...], sample: int | None = None) -> dict:  # fmt: skip
    """Recall (overall, per kind, per similarity band), precision and linked precision of ``assign``."""
    left, right, kind, similarity = planted["left"], planted["right"], planted["kind"], planted["similarity"]
    together = assign.cluster[left] == assign.cluster[right]
    positive = similarity >= threshold
    flagged, targets = relations(assign, sample)
    true = truth.similarity(flagged, targets) >= threshold if len(flagged) else np.zeros(0, bool)
    per_kind = {}
    for code in np.unique(kind).tolist():
        mine = kind == code
        per_kind[kinds[code]] = {
            "pairs": int(mine.sum()),
            "positives": int((mine & positive).sum()),
            "recall": _mean(together[mine & positive]),
            "negatives": int((mine & ~positive).sum()),
            "negatives_flagged": _mean(together[mine & ~positive]),
        }
    bands = {name: _mean(together[positive & (similarity >= low) & (similarity < high)])
             for name, low, high in band_names(threshold)}  # fmt: skip
    return {
        "recall": _mean(together[positive]),
        "positives": int(positive.sum()),
        "precision": _mean(true) if len(true) else 1.0,
        "linked_precision": linked(assign, flagged, truth, threshold),
        "relations": int((assign.duplicate_of >= 0).sum()),
        "relations_checked": len(flagged),
        "negatives_flagged": _mean(together[~positive]),
        "missed": int((positive & ~together).sum()),
        "per_kind": per_kind,
        "bands": bands,
    }


def evaluate_exact(assign: Assignment, planted: dict[str, np.ndarray], texts: pa.ChunkedArray,
                   exact_kinds: list[int], sample: int | None = None) -> dict:  # fmt: skip
    """Exact filter: recall on the exact and format pairs; precision = relations with equal normalised text."""
    mine = np.isin(planted["kind"], exact_kinds)
    together = assign.cluster[planted["left"][mine]] == assign.cluster[planted["right"][mine]]
    flagged, targets = relations(assign, sample)
    if not len(flagged):
        return {"recall": _mean(together), "precision": 1.0, "relations": 0}
    keys = pl.select(normalized(pl.Series(texts.take(pa.array(np.concatenate([flagged, targets])))))).to_series()
    same = (keys[: len(flagged)] == keys[len(flagged) :]).to_numpy()
    return {
        "recall": _mean(together),
        "precision": float(same.mean()),
        "relations": int((assign.duplicate_of >= 0).sum()),
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None
