"""Exact duplicates: the same rationale, up to case and whitespace, for the same prompt.

Within each prompt, the first trace (by trace_id) of each distinct text is kept as the
original; every later copy is marked ``duplicate`` and names the original it repeats.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa


class ExactDuplicate:
    name = "exact_dup"
    version = "1"
    reads = ("trace_id", "prompt_id", "rationale")

    def score(self, table: pa.Table) -> pa.Table:
        frame = pl.from_arrow(table.select(list(self.reads)))
        normalized = pl.col("rationale").fill_null("").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
        scored = (
            frame.with_columns(text_key=normalized.hash())
            .sort("trace_id")
            .with_columns(
                original=pl.col("trace_id").first().over(["prompt_id", "text_key"]),
                group_size=pl.len().over(["prompt_id", "text_key"]).cast(pl.Int64),
            )
            .with_columns(is_duplicate=(pl.col("original") != pl.col("trace_id")).cast(pl.Int8))
            .select(
                "trace_id",
                "is_duplicate",
                "group_size",
                duplicate_of=pl.when(pl.col("is_duplicate") == 1).then(pl.col("original")),
                passed=pl.col("is_duplicate") == 0,
                reason=pl.when(pl.col("is_duplicate") == 1).then(pl.lit("duplicate")).otherwise(pl.lit("unique")),
            )
        )
        return scored.to_arrow()
