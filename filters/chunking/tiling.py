"""Merge candidate units into chunks: a deterministic search trading coherence against a length budget.

Each boundary between two units has a gain: the strength of what marks it (``filters.chunking.segment``)
plus, when unit embeddings are given, a TextTiling-like coherence term — how much less similar
the ``window`` units after it are to the ``window`` units before it than the trace's boundaries
are on average (a dip in similarity is a topic shift). Cutting at a boundary earns its gain minus
``boundary_cost``; a chunk shorter than ``min_tokens`` (unless it is a final answer) or longer than
``max_tokens`` pays for the tokens it is off by. Dynamic programming over the units finds the
cuts with the best total: exact for this objective, and the same cuts every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from tracebank.errors import TracebankError
from tracebank.filters.chunking.segment import Unit


@dataclass(frozen=True)
class Budget:
    min_tokens: int = 6  # a shorter chunk pays short_weight per missing fraction of min_tokens
    max_tokens: int = 160  # a longer chunk pays long_weight per extra fraction of max_tokens
    boundary_cost: float = 0.4  # what a cut must earn: a sentence end (0.6) pays, a bare name (0.3) does not
    short_weight: float = 1.0
    long_weight: float = 2.0
    coherence_weight: float = 0.25  # weight of the similarity dip at a boundary (with embeddings on)
    window: int = 2  # units on each side of a boundary whose mean embedding is compared

    def __post_init__(self) -> None:
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise TracebankError(
                f"chunk budget needs 1 <= min_tokens <= max_tokens, got {self.min_tokens} and {self.max_tokens}"
            )
        if self.window < 1:
            raise TracebankError(f"window must be at least 1, got {self.window}")
        for name in ("boundary_cost", "short_weight", "long_weight", "coherence_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise TracebankError(f"{name} must be a number >= 0, got {value!r}")


def boundary_similarity(vectors: np.ndarray, window: int) -> np.ndarray:
    """Cosine similarity across each boundary (before unit i, i >= 1) of the mean unit vectors on either side."""
    n = len(vectors)
    sims = np.zeros(n)
    cumulative = np.concatenate([np.zeros((1, vectors.shape[1])), np.cumsum(vectors, axis=0)])
    for i in range(1, n):
        left = cumulative[i] - cumulative[max(0, i - window)]
        right = cumulative[min(n, i + window)] - cumulative[i]
        norm = np.linalg.norm(left) * np.linalg.norm(right)
        sims[i] = float(left @ right / norm) if norm > 0 else 0.0
    return np.round(sims, 3)  # float noise from batch composition must not move a cut


def gains(units: Sequence[Unit], vectors: np.ndarray | None, budget: Budget) -> np.ndarray:
    """The gain of cutting before each unit (index 0 unused)."""
    out = np.array([u.strength for u in units], dtype=float)
    if vectors is not None and len(units) > 2 and budget.coherence_weight:
        sims = boundary_similarity(vectors, budget.window)
        dip = np.clip(sims[1:].mean() - sims, -0.5, 0.5)
        out[1:] += budget.coherence_weight * dip[1:]
    return out


def _penalty(tokens: int, answer: bool, budget: Budget) -> float:
    if tokens < budget.min_tokens and not answer:
        return budget.short_weight * (budget.min_tokens - tokens) / budget.min_tokens
    if tokens > budget.max_tokens:
        return budget.long_weight * (tokens - budget.max_tokens) / budget.max_tokens
    return 0.0


def best_cuts(units: Sequence[Unit], tokens: Sequence[int], gain: np.ndarray, budget: Budget) -> list[int]:
    """Indices of the units that start chunks (always 0), maximising total gain minus length penalties."""
    n = len(units)
    if n == 0:
        return []
    prefix = np.concatenate([[0], np.cumsum(tokens)])
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    start_of = np.zeros(n + 1, dtype=int)
    reach = 4 * budget.max_tokens  # past this length a chunk always pays more than any cut costs
    for end in range(1, n + 1):
        for start in range(end - 1, -1, -1):
            length = int(prefix[end] - prefix[start])
            if length > reach and start < end - 1:
                break
            cut = gain[start] - budget.boundary_cost if start > 0 else 0.0
            total = best[start] + cut - _penalty(length, units[start].mark == "answer", budget)
            if total > best[end]:
                best[end], start_of[end] = total, start
    cuts, end = [], n
    while end > 0:
        end = start_of[end]
        cuts.append(end)
    return cuts[::-1]


def spans(units: Sequence[Unit], cuts: Sequence[int]) -> list[tuple[int, int]]:
    """Character spans of the chunks that start at ``cuts``: contiguous, covering every unit."""
    edges = [units[i].start for i in cuts] + [units[-1].end]
    return list(pairwise(edges))
