"""Text keys shared by the diversity filters: one normalisation, one tokenisation.

``normalized`` is what "the same text" means for duplicate detection: Unicode NFKC, lower case,
digit-group commas dropped (``1,000`` = ``1000``), trailing decimal zeros dropped (``2.50`` =
``2.5``, ``3.0`` = ``3``), runs of whitespace made one space, ends stripped. ``words`` splits the
normalised text into word tokens (letters, digits and decimal numbers), punctuation dropped.
"""

from __future__ import annotations

import polars as pl

WORD = r"\d+(?:\.\d+)?|\w+"


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
