"""Near duplicates: MinHash LSH over word shingles of the normalised rationale.

Each rationale becomes the set of its word ``shingle``-grams (after ``filters.diversity.text`` normalisation),
hashed to 64 bits; rensa computes ``num_perm`` MinHash values per trace from those hashes in one
call. LSH bands (chosen so that a pair at ``threshold`` is a candidate with probability 0.99)
propose candidate pairs, each candidate is verified by the exact Jaccard
similarity of the two shingle sets, and the pairs at or above ``threshold`` are
clustered with the shared representative rule (``filters.diversity.clusters``: correct first, then the
shortest, then trace_id). ``scope: prompt`` compares only traces of the same question (by its
normalised text, as ``exact_dup`` does); ``scope: dataset`` compares every trace with every other.

Metrics: ``is_near_dup``, ``cluster_id`` (the representative's trace_id), ``cluster_size``,
``duplicate_of`` (the representative, for duplicates), ``similarity`` (Jaccard similarity with the
earlier trace it joined). Reasons: ``unique`` (a representative, alone or not), ``near_duplicate``,
``no_rationale`` (not judged).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import rensa

from tracebank.errors import TracebankError, check_at_least
from tracebank.filters.diversity.clusters import Clusters, leader_clusters, representative_order
from tracebank.filters.diversity.exact import question_text
from tracebank.filters.diversity.text import ngram_hashes, normalized

MIX = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: mixes MinHash values into LSH band keys

SCOPES = ("prompt", "dataset")
CHUNK = 20_000  # traces per MinHash call: bounds the tokens and signatures held (rensa returns Python lists)
PAIR_CHUNK = 10_000  # candidate pairs verified at once: bounds the shingles gathered
BUCKET_PEERS = 64  # in an LSH bucket, each trace is paired with at most this many first members


@dataclass(frozen=True)
class NearDupOptions:
    shingle: int = 3  # words per shingle
    num_perm: int = 128  # MinHash values per trace
    threshold: float = 0.8  # estimated Jaccard similarity at or above which traces are near duplicates
    scope: str = "prompt"  # prompt: within a question; dataset: across all traces
    bands: int | None = None  # LSH bands (num_perm // bands rows each); default: chosen for threshold
    seed: int = 1

    def __post_init__(self) -> None:
        check_at_least(self, 1, "shingle", "num_perm", "bands")
        if not isinstance(self.threshold, (int, float)) or not 0 < self.threshold <= 1:
            raise TracebankError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.scope not in SCOPES:
            raise TracebankError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.bands is not None and self.bands > self.num_perm:
            raise TracebankError(f"bands ({self.bands}) cannot exceed num_perm ({self.num_perm})")


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows): the most rows per band with which a pair at ``threshold`` is a candidate with ``recall``.

    Candidates are verified exactly afterwards, so a false candidate costs only a comparison while
    a missed one is lost: the bands favour recall, and more rows keep unrelated pairs out.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def shingle_sets(texts: pl.Series, shingle: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each text's word-shingle hashes (a multiset: repeats are harmless to MinHash and Jaccard below) and row offsets.

    A text shorter than ``shingle`` words is one shingle of all its words; a text with no words has none.
    """
    hashes, rows = ngram_hashes(texts, shingle, seed)
    counts = np.bincount(rows, minlength=len(texts))
    return hashes, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _mixed(columns: np.ndarray, start: np.ndarray) -> np.ndarray:
    keys = start.astype(np.uint64).copy()
    with np.errstate(over="ignore"):
        for column in columns.T:
            keys = (keys ^ column.astype(np.uint64)) * MIX
    return keys


@dataclass(frozen=True)
class Sketches:
    shingles: np.ndarray  # every row's shingle hashes, concatenated
    offsets: np.ndarray  # row i's shingles are shingles[offsets[i]:offsets[i + 1]]
    band_keys: np.ndarray  # rows x bands: LSH bucket of each row in each band (group mixed in)


def sketch(texts: pl.Series, groups: np.ndarray, options: NearDupOptions, bands: int, rows: int) -> Sketches:
    """Shingle sets and LSH band keys, CHUNK texts at a time (MinHash signatures are not kept)."""
    shingles, offsets, keys = [], [np.zeros(1, np.int64)], np.empty((len(texts), bands), np.uint64)
    for start in range(0, len(texts), CHUNK):
        hashes, chunk_offsets = shingle_sets(texts.slice(start, CHUNK), options.shingle, options.seed)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
            hashes, chunk_offsets.astype(np.uint64), options.num_perm, options.seed
        )
        rows_ = matrix.to_rows()  # Python lists: fromiter is the cheapest way into numpy
        sigs = np.fromiter(itertools.chain.from_iterable(rows_), np.uint32, len(rows_) * options.num_perm)
        sigs = sigs.reshape(-1, options.num_perm)
        for band in range(bands):
            keys[start : start + len(sigs), band] = _mixed(
                sigs[:, band * rows : (band + 1) * rows], groups[start : start + len(sigs)]
            )
        shingles.append(hashes)
        offsets.append(chunk_offsets[1:] + offsets[-1][-1])
    flat = np.concatenate(shingles) if shingles else np.zeros(0, np.uint64)
    return Sketches(flat, np.concatenate(offsets), keys)


def candidate_pairs(band_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (left, right) row pairs sharing an LSH bucket in some band.

    In a bucket, each row pairs with at most BUCKET_PEERS of its first members, so a bucket of
    thousands of similar texts costs linear, not quadratic, work (they still join one cluster).
    """
    rows = len(band_keys)
    index = np.arange(rows, dtype=np.int64)
    codes = [np.zeros(0, np.int64)]  # a pair as row * rows + other: half the memory of two columns
    for band in range(band_keys.shape[1]):  # band by band: the pairs of all bands at once need gigabytes at 1M
        frame = pl.DataFrame({"key": band_keys[:, band], "row": index})
        frame = frame.filter(pl.len().over("key") > 1).with_columns(rank=pl.col("row").rank("ordinal").over("key"))
        first = frame.filter(pl.col("rank") <= BUCKET_PEERS).select("key", other="row")
        pairs = frame.join(first, on="key").filter(pl.col("row") > pl.col("other"))
        codes.append(np.unique(pairs["row"].to_numpy() * rows + pairs["other"].to_numpy()))
    unique = np.unique(np.concatenate(codes))
    return unique // max(rows, 1), unique % max(rows, 1)


def _gathered(sketches: Sketches, rows: np.ndarray) -> pl.DataFrame:
    """(pair, hash): the distinct shingles of ``rows[pair]`` for every pair position."""
    lengths = np.diff(sketches.offsets)[rows]
    total = int(lengths.sum())
    first = np.repeat(sketches.offsets[rows] - (np.cumsum(lengths) - lengths), lengths)
    positions = first + np.arange(total)
    return pl.DataFrame(
        {"pair": np.repeat(np.arange(len(rows)), lengths), "hash": sketches.shingles[positions]}
    ).unique()


def jaccard(sketches: Sketches, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the shingle sets of each (left, right) pair (two empty sets: 1)."""
    out = np.zeros(len(left))
    for start in range(0, len(left), PAIR_CHUNK):  # bounds the gathered shingles held at once
        lefts, rights = left[start : start + PAIR_CHUNK], right[start : start + PAIR_CHUNK]
        first, second = _gathered(sketches, lefts), _gathered(sketches, rights)
        sizes = [
            np.bincount(frame["pair"].to_numpy(), minlength=len(lefts))
            for frame in (first, second, first.join(second, on=["pair", "hash"]))
        ]
        union = sizes[0] + sizes[1] - sizes[2]
        out[start : start + PAIR_CHUNK] = np.where(union > 0, sizes[2] / np.maximum(union, 1), 1.0)
    return out


class NearDuplicate:
    name = "near_dup"
    version = "1"
    reads = ("trace_id", "prompt_id", "messages", "rationale", "correct")
    Options = NearDupOptions

    def __init__(self, options: NearDupOptions | None = None):
        self.options = options or NearDupOptions()
        self.bands, self.rows = (
            (self.options.bands, self.options.num_perm // self.options.bands)
            if self.options.bands
            else lsh_bands(self.options.threshold, self.options.num_perm)
        )

    def score(self, table: pa.Table) -> pa.Table:
        texts = pl.Series(table.column("rationale"))
        judged = np.nonzero((texts.str.strip_chars() != "").fill_null(False).to_numpy())[0]
        subset = table.take(judged)
        sketches = sketch(texts.gather(judged), self._groups(subset), self.options, self.bands, self.rows)
        left, right = candidate_pairs(sketches.band_keys)
        similarity = jaccard(sketches, left, right)
        close = similarity >= self.options.threshold
        clusters = leader_clusters(representative_order(subset), left[close], right[close], similarity[close])
        return _rows(table, subset, clusters)

    def _groups(self, table: pa.Table) -> np.ndarray:
        if self.options.scope == "dataset":
            return np.zeros(table.num_rows, np.uint64)
        prompts = pl.from_arrow(table.select(["prompt_id", "messages"]))
        keys = prompts.unique("prompt_id").select(  # each distinct prompt normalised once
            "prompt_id", key=normalized(question_text(pl.col("messages"))).hash(self.options.seed)
        )
        return (
            prompts.select("prompt_id").join(keys, on="prompt_id", how="left", maintain_order="left")["key"].to_numpy()
        )


def _rows(table: pa.Table, judged: pa.Table, clusters: Clusters) -> pa.Table:
    """One row per trace of ``table``; traces outside ``judged`` (no rationale) are not judged."""
    ids = pl.Series(judged.column("trace_id"))
    leader = ids.gather(clusters.leader)
    is_dup = pl.Series(clusters.leader != np.arange(len(ids)))
    scored = pl.DataFrame({
        "trace_id": ids,
        "is_near_dup": is_dup.cast(pl.Int8),
        "cluster_id": leader,
        "cluster_size": pl.Series(clusters.size(), dtype=pl.Int64),
        "duplicate_of": pl.select(pl.when(is_dup).then(leader)).to_series(),
        "similarity": pl.Series(clusters.similarity).fill_nan(None),
    })  # fmt: skip
    every = pl.from_arrow(table.select(["trace_id"])).join(scored, on="trace_id", how="left", maintain_order="left")
    return every.with_columns(
        passed=pl.col("is_near_dup") == 0,
        reason=pl.when(pl.col("is_near_dup").is_null())
        .then(pl.lit("no_rationale"))
        .when(pl.col("is_near_dup") == 1)
        .then(pl.lit("near_duplicate"))
        .otherwise(pl.lit("unique")),
    ).to_arrow()
