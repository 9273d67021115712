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
MIX = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: mixes word hashes into n-gram hashes


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


def ngram_hashes(texts: pl.Series, n: int, seed: int = 0, short_as_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word ``n``-gram of each text, and the text (row) each belongs to.

    A text shorter than ``n`` words gives one n-gram of all its words when ``short_as_one``
    (duplicate detection: it still has a fingerprint), else none (distinct-n counts full n-grams).
    """
    tokens = pl.DataFrame({"text": texts}).select(words(pl.col("text")).alias("tokens"))["tokens"]
    lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = tokens.explode().drop_nulls().hash(seed).to_numpy()
    padded = np.concatenate([flat, np.zeros(n, np.uint64)])
    position = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    length = np.repeat(lengths, lengths)
    width = np.minimum(length, n) if short_as_one else np.full(len(flat), n)
    index = np.nonzero(position <= length - width)[0]  # one start per full window (a short text's at 0)
    hashes = np.zeros(len(index), np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            hashes = np.where(k < width[index], (hashes ^ padded[index + k]) * MIX, hashes)
    return hashes, np.repeat(np.arange(len(lengths)), lengths)[index]
