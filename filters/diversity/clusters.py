"""Duplicate clusters with a stated representative, shared by the exact, near and semantic filters.

The representative rule: a verified-correct trace first (``correct`` 1, then 0, then unknown), then
the shortest rationale, then the smallest trace_id. It depends only on the data, so reruns choose
the same representatives.

Clustering is greedy in that order over candidate pairs that passed the similarity threshold:
each trace joins the cluster of its most similar earlier neighbour, or starts a cluster of its
own and is its representative. Every trace in a cluster therefore duplicates an earlier member,
and the representative is the best one by the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa


def representative_order(table: pa.Table) -> np.ndarray:
    """Row positions of ``table`` (trace_id, rationale, optional correct) in representative order."""
    n = table.num_rows
    correct = table.column("correct") if "correct" in table.column_names else pa.nulls(n, pa.int8())
    frame = pl.DataFrame({
        "trace_id": pl.Series(table.column("trace_id")),
        "correct": pl.Series(correct).cast(pl.Int8),
        "length": pl.Series(table.column("rationale")).str.len_chars().fill_null(0),
    }).with_row_index("position")  # fmt: skip
    ordered = frame.sort(["correct", "length", "trace_id"], descending=[True, False, False], nulls_last=True)
    return ordered["position"].to_numpy()


@dataclass(frozen=True)
class Clusters:
    leader: np.ndarray  # per row: the row position of its cluster's representative (itself for one)
    similarity: np.ndarray  # per row: similarity to the earlier neighbour it joined (NaN for representatives)

    def size(self) -> np.ndarray:
        """Per row: the number of rows in its cluster."""
        return np.bincount(self.leader, minlength=len(self.leader))[self.leader]


def leader_clusters(order: np.ndarray, left: np.ndarray, right: np.ndarray, similarity: np.ndarray) -> Clusters:
    """Clusters of ``len(order)`` rows from candidate pairs (``left[k]``, ``right[k]``) and their similarities.

    Pairs are undirected and already above the threshold; duplicates and self-pairs are ignored.
    """
    n = len(order)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    leader = np.arange(n)
    joined = np.full(n, np.nan)
    keep = left != right
    left, right, similarity = left[keep], right[keep], similarity[keep]
    if not len(left):
        return Clusters(leader, joined)
    earlier = np.where(rank[left] < rank[right], left, right)
    later = np.where(rank[left] < rank[right], right, left)
    # For each later row, its earlier neighbours, most similar first (ties: the earlier one).
    pairs = pl.DataFrame({"later": later, "earlier": earlier, "sim": similarity, "rank": rank[earlier]})
    best = pairs.sort(["sim", "rank"], descending=[True, False]).group_by("later", maintain_order=True).first()
    best = best.with_columns(later_rank=pl.Series(rank[best["later"].to_numpy()])).sort("later_rank")
    for row, neighbour, sim in zip(
        best["later"].to_list(), best["earlier"].to_list(), best["sim"].to_list(), strict=True
    ):
        leader[row] = leader[neighbour]  # the neighbour ranks earlier, so its cluster is already final
        joined[row] = sim
    return Clusters(leader, joined)
