"""Text keys shared by the diversity filters: one normalisation, one tokenisation.

``normalized`` is what "the same text" means for duplicate detection: Unicode NFKC, lower case,
digit-group commas dropped (``1,000`` = ``1000``), trailing decimal zeros dropped (``2.50`` =
``2.5``, ``3.0`` = ``3``), runs of whitespace made one space, ends stripped. ``words`` splits the
normalised text into word tokens (letters, digits and decimal numbers), punctuation dropped.
"""

from __future__ import annotations

import numpy as np
import polars as pl

WORD = r"\d+(?:\.\d+)?|\w+"
MULTIPLIER = np.uint64(0x9E37_79B9_7F4A_7C15)  # odd, so no word position is multiplied away


def normalized(text: pl.Expr) -> pl.Expr:
    """The duplicate-detection key of a text column (null stays null)."""
    out = text.str.normalize("NFKC").str.to_lowercase()
    for _ in range(2):  # a replace pass skips every other group of 1,000,000: two passes cover any length
        out = out.str.replace_all(r"(\d),(\d{3})", "${1}${2}")
    out = out.str.replace_all(r"(\d)\.0+\b", "${1}").str.replace_all(r"(\d\.\d*[1-9])0+\b", "${1}")
    return out.str.replace_all(r"\s+", " ").str.strip_chars()


def words(text: pl.Expr) -> pl.Expr:
    """Word tokens of the normalised text, as a list column."""
    return normalized(text).str.extract_all(WORD)


def normalize_one(text: str) -> str:
    """:func:`normalized` for one string."""
    return pl.select(normalized(pl.lit(text, pl.String))).item()


def token_hashes(texts: pl.Series, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The uint64 hashes of every text's words, end to end, and each text's word count."""
    tokens = pl.DataFrame({"text": texts.cast(pl.String)}).select(tokens=words(pl.col("text")))["tokens"]
    lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = tokens.explode().drop_nulls()  # an empty or null text explodes to one null: dropped
    return flat.hash(seed).to_numpy().astype(np.uint64), lengths


def ngram_keys(
    hashes: np.ndarray, lengths: np.ndarray, n: int, short_as_one: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text index, start word, key) of every word n-gram within one text; keys are polynomials of word hashes.

    With ``short_as_one`` a text of fewer than ``n`` (but some) words gives one key of all its
    words (duplicate detection: it still has a fingerprint); otherwise it gives none (distinct-n
    and decontamination count full n-grams only).
    """
    padded = np.concatenate([hashes, np.zeros(n, np.uint64)])
    total = len(hashes)
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    starts = np.arange(total, dtype=np.int64) - (np.cumsum(lengths) - lengths)[owner]
    width = np.minimum(lengths[owner], n) if short_as_one else np.full(total, n)
    keep = np.flatnonzero(starts + width <= lengths[owner])  # one window per start that fits (a short text's at 0)
    keys = padded[keep].copy()
    for k in range(1, n):  # uint64 arithmetic wraps: a polynomial hash mod 2**64
        longer = k < width[keep]
        keys = np.where(longer, keys * MULTIPLIER + padded[keep + k], keys)
    return owner[keep], starts[keep], keys


def ngram_hashes(texts: pl.Series, n: int, seed: int = 0, short_as_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """64-bit keys of every word ``n``-gram of each text, and the text (row) each belongs to."""
    rows, _, keys = ngram_keys(*token_hashes(texts, seed), n, short_as_one)
    return keys, rows
