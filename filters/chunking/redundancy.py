"""Redundant chunks: repeats inside one trace (loops, restarts) and boilerplate shared across questions.

A chunk repeats an earlier chunk of its trace when the Jaccard similarity of their word 3-gram sets
(``filters.diversity.text`` normalisation and tokens) is at least ``threshold``; chunks of fewer than
``MIN_WORDS`` words are never repeats ("So." twice is not a loop). A chunk is boilerplate when its
normalised text is a chunk of traces of at least ``min_prompts`` different questions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from tracebank.filters.diversity.text import ngram_hashes, normalized

MIN_WORDS = 4
SHINGLE = 3


def repeats(texts: Sequence[str], threshold: float) -> list[int | None]:
    """For each chunk of one trace, the index of the first earlier chunk it repeats, else None."""
    if len(texts) < 2:
        return [None] * len(texts)
    hashes, rows = ngram_hashes(pl.Series(list(texts), dtype=pl.String), SHINGLE)
    sets = [set(hashes[rows == i].tolist()) for i in range(len(texts))]
    sizes = pl.DataFrame({"text": list(texts)}).select(pl.col("text").str.count_matches(r"\w+")).to_series().to_list()
    found: list[int | None] = []
    for i, shingles in enumerate(sets):
        match = None
        if sizes[i] >= MIN_WORDS:
            for j in range(i):
                union = len(shingles | sets[j])
                if sizes[j] >= MIN_WORDS and union and len(shingles & sets[j]) / union >= threshold:
                    match = j
                    break
        found.append(match)
    return found


def boilerplate(texts: Sequence[str], questions: Sequence[str], min_prompts: int) -> np.ndarray:
    """For each chunk (of any trace), whether its normalised text is a chunk for ``min_prompts`` questions or more."""
    if not texts:
        return np.zeros(0, bool)
    frame = pl.DataFrame(
        {"text": list(texts), "question": list(questions)}, schema={"text": pl.String, "question": pl.String}
    )
    counted = frame.with_columns(key=normalized(pl.col("text"))).with_columns(
        prompts=pl.col("question").n_unique().over("key")
    )
    return ((counted["prompts"] >= min_prompts) & (counted["key"] != "")).to_numpy()
