"""Exact duplicates: the same rationale for the same question, up to formatting.

Texts are compared by their normalised form (``filters.diversity.text.normalized``: case, whitespace, Unicode
forms and number formatting such as ``1,000``/``1000``). Questions are compared the same way, so
the same question imported twice under different prompt ids (other spacing or case, or a test
question that is also a train question) counts as one question.

Within each question, the representative of each distinct text (``filters.diversity.clusters``: correct
first, then the shortest, then trace_id) is kept as the original; every other copy is a
``duplicate`` naming it. Metrics: ``is_duplicate``, ``group_size``, ``duplicate_of``;
``prompt_copies`` (prompt ids with this question's text), ``prompt_duplicate_of`` (the smallest of
those ids, when it is not this trace's own: its traces repeat a question asked elsewhere), and
``rationale_prompts`` (how many different questions have exactly this rationale: more than one is
boilerplate, or an answer copied to the wrong question). A trace with no rationale is not judged.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from tracebank.filters.diversity.clusters import representative_order
from tracebank.filters.diversity.text import normalized


def question_text(messages: pl.Expr) -> pl.Expr:
    """The text of a prompt's messages, joined, for comparing questions across prompt ids."""
    return messages.list.eval(pl.element().struct.field("content")).list.join("\n")


class ExactDuplicate:
    name = "exact_dup"
    version = "2"
    reads = ("trace_id", "prompt_id", "messages", "rationale", "correct")

    def score(self, table: pa.Table) -> pa.Table:
        order = representative_order(table)
        frame = (
            pl.from_arrow(table.select(["trace_id", "prompt_id", "messages", "rationale"]))
            .with_columns(
                question=normalized(question_text(pl.col("messages"))).hash(),
                text_key=normalized(pl.col("rationale")).hash(),
            )
            .drop("messages")
        )
        frame = frame[order]  # representative first within every group
        group = ["question", "text_key"]
        scored = (
            frame.with_columns(
                original=pl.col("trace_id").first().over(group),
                group_size=pl.len().over(group).cast(pl.Int64),
                prompt_copies=pl.col("prompt_id").n_unique().over("question").cast(pl.Int64),
                first_prompt=pl.col("prompt_id").min().over("question"),
                rationale_prompts=pl.col("question").n_unique().over("text_key").cast(pl.Int64),
            )
            .with_columns(is_duplicate=(pl.col("original") != pl.col("trace_id")).cast(pl.Int8))
            .select(
                "trace_id",
                "is_duplicate",
                "group_size",
                duplicate_of=pl.when(pl.col("is_duplicate") == 1).then(pl.col("original")),
                prompt_copies="prompt_copies",
                prompt_duplicate_of=pl.when(pl.col("first_prompt") != pl.col("prompt_id")).then("first_prompt"),
                rationale_prompts="rationale_prompts",
                passed=pl.col("is_duplicate") == 0,
                reason=pl.when(pl.col("is_duplicate") == 1).then(pl.lit("duplicate")).otherwise(pl.lit("unique")),
            )
        )
        missing = pl.Series(table.column("rationale")).is_null().gather(order)  # in frame order
        unjudged = ("is_duplicate", "group_size", "duplicate_of", "rationale_prompts", "passed")
        scored = scored.with_columns(
            *[pl.when(missing).then(None).otherwise(pl.col(c)).alias(c) for c in unjudged],
            reason=pl.when(missing).then(pl.lit("no_rationale")).otherwise(pl.col("reason")),
        )
        return scored.sort("trace_id").to_arrow()
