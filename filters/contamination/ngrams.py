"""Hashed word n-grams: an index of benchmark items, lookups, and matched spans in the original text.

Tokens are ``filters.diversity.text.words`` (the shared normalisation, then word tokens). Each token is
hashed to 64 bits with polars' ``hash`` (fixed seed) and an n-gram is a polynomial of its tokens'
hashes mod 2**64, so n-grams are plain ``uint64`` arrays: an index costs 12 bytes per distinct
(n-gram, item field) pair, whatever the words. Hashes are only compared within one process (the index
is built where it is used), so polars may change its hash between versions without harm.

:func:`word_spans` tokenises one text the same way while keeping each token's character offsets
in the text as given, so a match found on normalised words can be shown in the original.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import polars as pl

from tracebank.benchmarks import Items
from tracebank.filters.diversity.text import WORD, ngram_keys, token_hashes

SEED = 0x7472_6163_6562_616E  # any fixed value: equal tokens must hash equally within a process


@dataclass(frozen=True)
class SortedPairs:
    """Distinct (key, unit) pairs sorted by key (units ascending within a key), and each unit's count."""

    keys: np.ndarray  # uint64
    units: np.ndarray  # uint32
    totals: pl.DataFrame  # unit, total: distinct n-grams of each unit

    @classmethod
    def build(cls, keys: np.ndarray, units: np.ndarray, unit_count: int) -> SortedPairs:
        """From pairs whose units ascend in input order: a stable sort then keeps duplicates adjacent."""
        order = np.argsort(keys, kind="stable")
        keys, units = keys[order], units[order]
        del order
        distinct = np.ones(len(keys), bool)
        distinct[1:] = (keys[1:] != keys[:-1]) | (units[1:] != units[:-1])
        keys, units = keys[distinct], units[distinct]
        totals = np.bincount(units, minlength=unit_count).astype(np.int64)
        return cls(keys, units, pl.DataFrame({"unit": np.arange(unit_count, dtype=np.uint32), "total": totals}))

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``keys``, unit) for every unit holding each key."""
        order = np.argsort(keys)  # sorted lookups touch the index in order: many times faster
        low = np.empty(len(keys), np.int64)
        high = np.empty(len(keys), np.int64)
        low[order] = np.searchsorted(self.keys, keys[order], "left")
        high[order] = np.searchsorted(self.keys, keys[order], "right")
        hit = np.flatnonzero(high > low)
        counts = (high - low)[hit]
        rows = np.repeat(hit, counts)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.units[low[rows] + within]


@dataclass(frozen=True)
class NgramIndex:
    """Per n-gram size, the sorted (n-gram key, unit) pairs, where a unit is one text field of one item.

    Units are numbered item by item (benchmarks in the order given, items in file order), fields in
    the benchmark's order within an item, so a smaller unit number means "comes first". Memory: 12
    bytes per distinct (n-gram, unit) pair and size, plus a batch of texts while building.
    """

    benchmarks: list[str]  # benchmark names, in the order checked
    units: pl.DataFrame  # unit (u32), benchmark, item_id, item_field: what each unit number means
    pairs: dict[int, SortedPairs]

    @property
    def totals(self) -> dict[int, pl.DataFrame]:
        return {n: pairs.totals for n, pairs in self.pairs.items()}

    @classmethod
    def build(cls, loaded: list[Items], sizes: tuple[int, ...], batch: int = 20_000) -> NgramIndex:
        units: list[pl.DataFrame] = []
        found: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {n: ([], []) for n in sizes}
        base = 0
        for items in loaded:
            fields = list(items.texts)  # each field on its own: no n-gram spans two
            texts = [items.texts[field][i] for i in range(len(items.ids)) for field in fields]  # in unit order
            for first in range(0, len(texts), batch):
                hashes, lengths = token_hashes(pl.Series(texts[first : first + batch], dtype=pl.String), SEED)
                for n in sizes:
                    owner, _, keys = ngram_keys(hashes, lengths, n)
                    found[n][0].append(keys)
                    found[n][1].append((owner + base + first).astype(np.uint32))
            units.append(
                pl.DataFrame(
                    {"item_id": [i for i in items.ids for _ in fields], "item_field": fields * len(items.ids)}
                ).select(benchmark=pl.lit(items.benchmark.name), item_id="item_id", item_field="item_field")
            )
            base += len(texts)
        empty = pl.DataFrame(schema={"benchmark": pl.String, "item_id": pl.String, "item_field": pl.String})
        table = (
            (pl.concat(units) if units else empty).with_row_index("unit").with_columns(pl.col("unit").cast(pl.UInt32))
        )
        pairs = {}
        for n in sizes:
            keys, owners = found.pop(n)
            pairs[n] = SortedPairs.build(
                np.concatenate(keys) if keys else np.zeros(0, np.uint64),
                np.concatenate(owners) if owners else np.zeros(0, np.uint32),
                base,
            )
        return cls([i.benchmark.name for i in loaded], table, pairs)

    def matches(self, texts: pl.Series, n: int) -> pl.DataFrame:
        """(text, start, key, unit) for every n-gram of ``texts`` found in a unit."""
        owner, starts, keys = ngram_keys(*token_hashes(texts, SEED), n)
        rows, units = self.pairs[n].find(keys)
        return pl.DataFrame({"text": owner[rows], "start": starts[rows], "key": keys[rows], "unit": units})


_DIGIT_GROUP = re.compile(r"(\d)(,)(\d{3})")
_POINT_ZEROS = re.compile(r"(\d)(\.0+)\b")
_TRAILING_ZEROS = re.compile(r"(\d\.\d*[1-9])(0+)\b")


def _normalize_with_offsets(text: str) -> tuple[str, list[int], list[int]]:
    """``filters.diversity.text.normalized`` (less whitespace, which no word depends on), with each character's
    span in ``text``: NFKC per character and the combining marks after it, then lower case."""
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    begin = 0
    for i in range(1, len(text) + 1):
        if i < len(text) and unicodedata.combining(text[i]):
            continue
        piece = unicodedata.normalize("NFKC", text[begin:i])
        pieces.append(piece)
        starts.extend([begin] * len(piece))
        ends.extend([i] * len(piece))
        begin = i
    out = "".join(pieces)
    lowered = out.lower()  # the whole text at once: a final sigma depends on its context
    if len(lowered) != len(out):  # a few characters lower-case to two (İ -> i̇): keep one, offsets stay aligned
        lowered = "".join(c.lower()[0] for c in out)
    out = lowered
    for pattern in (_DIGIT_GROUP, _DIGIT_GROUP, _POINT_ZEROS, _TRAILING_ZEROS):  # the same passes as normalized()
        out, starts, ends = _drop_group_two(out, starts, ends, pattern)
    return out, starts, ends


def _drop_group_two(text: str, starts: list[int], ends: list[int], pattern: re.Pattern[str]):
    kept_text: list[str] = []
    kept_starts: list[int] = []
    kept_ends: list[int] = []
    last = 0
    for match in pattern.finditer(text):
        cut, resume = match.span(2)
        kept_text.append(text[last:cut])
        kept_starts.extend(starts[last:cut])
        kept_ends.extend(ends[last:cut])
        kept_ends[-1] = ends[resume - 1]  # the digit before a dropped "0"s or "," spans them: "2.50" stays whole
        last = resume
    kept_text.append(text[last:])
    return "".join(kept_text), kept_starts + starts[last:], kept_ends + ends[last:]


def word_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The words of ``text`` (as :func:`filters.diversity.text.words` finds them) and each one's span in ``text``."""
    normalized, starts, ends = _normalize_with_offsets(text)
    tokens, spans = [], []
    for match in re.finditer(WORD, normalized):
        tokens.append(match.group())
        spans.append((starts[match.start()], ends[match.end() - 1]))
    return tokens, spans


def longest_span(text: str, keys: np.ndarray, n: int) -> tuple[int, int] | None:
    """Character span in ``text`` of the longest run of words covered by its n-grams in ``keys``."""
    tokens, spans = word_spans(text)
    if len(tokens) < n:
        return None
    hashes = pl.Series(tokens, dtype=pl.String).hash(SEED).to_numpy().astype(np.uint64)
    _, starts, found = ngram_keys(hashes, np.array([len(tokens)]), n)
    covered = np.zeros(len(tokens) + 1, np.int8)  # +1: a run always ends
    for start in starts[np.isin(found, keys)]:
        covered[start : start + n] = 1
    if not covered.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate([[0], covered])))  # alternating run starts and ends
    runs = edges.reshape(-1, 2)
    first, stop = runs[np.argmax(runs[:, 1] - runs[:, 0])]  # the first of the longest runs
    return spans[first][0], spans[stop - 1][1]
