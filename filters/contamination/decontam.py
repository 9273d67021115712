"""Decontamination: word n-gram overlap of prompts and rationales with benchmark items.

Texts are compared as word n-grams of ``filters.diversity.text.words`` (case, Unicode forms, whitespace,
punctuation and number formatting do not matter). Each trace's question (its prompt messages
joined, ``filters.diversity.exact.question_text``) and its rationale are checked against every text
field of every item of every benchmark (``tracebank.benchmarks``: GSM8K test and HumanEval built
in, plus registered files); each item field (GSM8K: question, answer) is compared on its own.

The rule, with the default sizes (8, 13): a text is contaminated by an item field when it shares
one 13-gram with it (a copied sentence), or when the 8-grams it shares cover at least
``min_overlap`` (half) of the field's 8-grams (a copy with a word changed every few words, or a
short item with no 13-gram). In general: one shared n-gram of the largest size, or ``min_overlap``
of the field's n-grams of each smaller size; with one size, one shared n-gram. A fixed count of
shared 8-grams would flag boilerplate: in GSM8K, "how much money will she have left over after she
buys" is four 8-grams shared by unrelated train and test questions. Fields shorter than the
smallest size cannot be matched.

Each trace gets one row naming the best match: contaminated first, then most shared n-grams of
the smallest size, then the first benchmark checked, the item first in its file and its first
field, then prompt before rationale. ``span_start``/``span_end`` are character offsets, in the
trace's own field text, of the longest run of words the shared n-grams cover (``matched_text``:
that span, clipped to 200 characters); ``matched_ngrams`` counts the shared n-grams and
``overlap`` is their share of the item field's (``item_field``) n-grams. A clean trace that shares
n-grams below the threshold still names its closest item, so thresholds can be audited.
``benchmarks_checked`` names each benchmark with the digest of the bytes read (and
``benchmarks_skipped`` why a built-in absent from this machine was skipped). A trace with none of
the checked texts (``fields: [rationale]`` and no rationale) is not judged: reason ``no_text``. The
``contamination`` view lists the flagged traces, one row each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from tracebank import benchmarks as benchmarks_mod
from tracebank.errors import TracebankError
from tracebank.filters.contamination.ngrams import NgramIndex, longest_span
from tracebank.filters.diversity.exact import question_text

if TYPE_CHECKING:
    from tracebank.catalog import Catalog

FIELDS = ("prompt", "rationale")
_NO_MATCH = pl.DataFrame(
    schema={"trace_id": pl.String, "unit": pl.UInt32, "field": pl.String, "contaminated": pl.Int8,
            "matched_ngrams": pl.Int64, "overlap": pl.Float64, "span_start": pl.Int64, "span_end": pl.Int64,
            "matched_text": pl.String}
)  # fmt: skip
MAX_NGRAM = 64
MATCHED_TEXT_CHARS = 200


def _as_tuple(value: object, name: str) -> tuple:
    if isinstance(value, (str, int)):
        return (value,)
    if not isinstance(value, (list, tuple)):
        raise TracebankError(f"decontam {name}: expected a list, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class DecontamOptions:
    ngram: tuple[int, ...] = (8, 13)  # word n-gram sizes: the largest flags on one match, smaller ones on coverage
    min_overlap: float = 0.5  # share of an item's smaller-size n-grams that flags a text
    benchmarks: tuple[str, ...] = ()  # benchmark names to check; empty: every built-in and registered one
    fields: tuple[str, ...] = FIELDS  # which texts of a trace to check: prompt, rationale or both

    def __post_init__(self) -> None:
        for name in ("ngram", "benchmarks", "fields"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name), name))
        sizes = self.ngram
        if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) and 3 <= n <= MAX_NGRAM for n in sizes):
            raise TracebankError(f"decontam ngram: sizes must be whole numbers from 3 to {MAX_NGRAM}, got {sizes}")
        object.__setattr__(self, "ngram", tuple(sorted(set(sizes))))
        overlap = self.min_overlap
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 < overlap <= 1:
            raise TracebankError(f"decontam min_overlap: a share above 0 and at most 1, got {overlap!r}")
        if not self.fields or any(f not in FIELDS for f in self.fields) or len(set(self.fields)) != len(self.fields):
            raise TracebankError(f"decontam fields: choose from {', '.join(FIELDS)} (each once), got {self.fields}")
        names = self.benchmarks
        if not all(isinstance(b, str) and b for b in names) or len(set(names)) != len(names):
            raise TracebankError(f"decontam benchmarks: name each benchmark once, got {self.benchmarks}")


class Decontamination:
    name = "decontam"
    version = "1"
    reads = ("trace_id", "messages", "rationale")
    Options = DecontamOptions

    def __init__(self, options: DecontamOptions | None = None):
        self.options = options or DecontamOptions()
        self.index: NgramIndex | None = None
        self.checked = ""
        self.skipped: str | None = None

    def prepare(self, cat: Catalog | None, dataset: str | None = None) -> None:
        """Read the benchmarks (registered ones from ``cat``; None: built-ins only) and index them."""
        chosen = benchmarks_mod.choose(cat, self.options.benchmarks)
        explicit = set(self.options.benchmarks)
        loaded, notes = [], []
        for benchmark in chosen:
            items, note = benchmarks_mod.load(benchmark, benchmark.name in explicit)
            if items is not None:
                loaded.append(items)
            if note:
                notes.append(note)
        self.use(loaded, notes)

    def use(self, loaded: list[benchmarks_mod.Items], notes: list[str] = ()) -> None:
        """Index these benchmark items (``prepare`` calls it; tests may call it directly)."""
        self.index = NgramIndex.build(loaded, self.options.ngram)
        self.checked = ", ".join(items.label for items in loaded)
        self.skipped = "; ".join(notes) or None

    def score(self, table: pa.Table) -> pa.Table:
        if self.index is None:
            raise TypeError("decontam: call prepare(cat, dataset) before score()")
        if not table.num_rows:
            empty = pl.Series("trace_id", [], pl.String)
            return self._rows(empty.to_frame(), _NO_MATCH, empty).to_arrow()
        frame = pl.from_arrow(table.select(list(self.reads)))
        fields, texts = self._field_texts(frame)
        candidates, shared = self._candidates(texts)
        best = self._best(fields, candidates)
        best = self._with_spans(best, texts, shared)
        return self._rows(frame.select("trace_id"), best, fields["trace_id"]).to_arrow()

    def _field_texts(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
        """(trace_id, field, text index) per checked field, and the distinct texts they index."""
        long = pl.concat(
            [
                frame.select("trace_id", field=pl.lit(name), text=question_text(pl.col("messages")))
                if name == "prompt"
                else frame.select("trace_id", field=pl.lit(name), text=pl.col("rationale"))
                for name in self.options.fields
            ]
        ).drop_nulls("text")
        texts = long["text"].unique(maintain_order=True)
        lookup = pl.DataFrame({"text": texts, "text_idx": pl.int_range(len(texts), eager=True, dtype=pl.Int64)})
        fields = long.join(lookup, on="text", how="left").drop("text")
        return fields.with_columns(field_order=pl.col("field").replace_strict(FIELDS, range(len(FIELDS)))), texts

    def _candidates(self, texts: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Per (text, unit) sharing any n-gram: verdict, shared n-grams of the smallest size and overlap;
        and those shared smallest n-grams themselves (text_idx, unit, key), for the spans."""
        sizes, index = self.options.ngram, self.index
        joined, shared = None, None
        for n in sizes:
            found = index.matches(texts, n).rename({"text": "text_idx"})
            if n == sizes[0]:
                shared = found.select("text_idx", "unit", "key")
            counts = (
                found.group_by("text_idx", "unit")
                .agg(pl.col("key").n_unique().alias(f"shared_{n}"))
                .join(index.totals[n].rename({"total": f"total_{n}"}), on="unit", how="left")
            )
            joined = (
                counts if joined is None else joined.join(counts, on=["text_idx", "unit"], how="full", coalesce=True)
            )
        joined = joined.with_columns(pl.col(f"shared_{n}").fill_null(0) for n in sizes)
        flagged = pl.col(f"shared_{sizes[-1]}") > 0
        for n in sizes[:-1]:
            flagged = flagged | (pl.col(f"shared_{n}") >= self.options.min_overlap * pl.col(f"total_{n}"))
        candidates = joined.select(
            "text_idx",
            "unit",
            contaminated=flagged.fill_null(False).cast(pl.Int8),
            matched_ngrams=pl.col(f"shared_{sizes[0]}").cast(pl.Int64),
            overlap=(pl.col(f"shared_{sizes[0]}") / pl.col(f"total_{sizes[0]}")).fill_null(0.0).cast(pl.Float64),
        )
        return candidates, shared

    def _best(self, fields: pl.DataFrame, candidates: pl.DataFrame) -> pl.DataFrame:
        """The one reported (field, item) per trace, by the order in the module docstring."""
        ranked = fields.join(candidates, on="text_idx", how="inner").sort(
            ["contaminated", "matched_ngrams", "unit", "field_order"], descending=[True, True, False, False]
        )
        return ranked.group_by("trace_id", maintain_order=True).first()

    def _with_spans(self, best: pl.DataFrame, texts: pl.Series, shared: pl.DataFrame) -> pl.DataFrame:
        """``best`` with the span of the reported item's shared n-grams in the field's own text."""
        n = self.options.ngram[0]
        keys = (
            shared.join(best.select("text_idx", "unit").unique(), on=["text_idx", "unit"], how="semi")
            .group_by("text_idx", "unit")
            .agg(pl.col("key").unique())
        )
        spans = []
        for text_idx, unit, found in keys.iter_rows():
            text = texts[text_idx]
            span = longest_span(text, np.asarray(found, np.uint64), n)
            start, end = span if span else (None, None)
            clipped = text[start:end] if span else None
            if clipped is not None and len(clipped) > MATCHED_TEXT_CHARS:
                clipped = clipped[:MATCHED_TEXT_CHARS] + "…"
            spans.append((text_idx, unit, start, end, clipped))
        schema = {"text_idx": pl.Int64, "unit": pl.UInt32, "span_start": pl.Int64, "span_end": pl.Int64,
                  "matched_text": pl.String}  # fmt: skip
        return best.join(pl.DataFrame(spans, schema=schema, orient="row"), on=["text_idx", "unit"], how="left")

    def _rows(self, traces: pl.DataFrame, best: pl.DataFrame, judged_ids: pl.Series) -> pl.DataFrame:
        out = traces.join(
            best.join(self.index.units, on="unit", how="left"), on="trace_id", how="left", maintain_order="left"
        )
        judged = pl.col("trace_id").is_in(judged_ids.implode())  # a trace with none of the checked texts is not
        out = out.with_columns(
            contaminated=pl.when(judged).then(pl.col("contaminated").fill_null(0)).cast(pl.Int8),
            matched_ngrams=pl.when(judged).then(pl.col("matched_ngrams").fill_null(0)),
            overlap=pl.when(judged).then(pl.col("overlap").fill_null(0.0)),
        )
        return out.select(
            "trace_id",
            "contaminated",
            "benchmark",
            "item_id",
            "item_field",
            "field",
            "span_start",
            "span_end",
            "matched_text",
            "matched_ngrams",
            "overlap",
            benchmarks_checked=pl.lit(self.checked, pl.String),
            benchmarks_skipped=pl.lit(self.skipped, pl.String),
            passed=pl.col("contaminated") == 0,
            reason=pl.when(pl.col("contaminated") == 1)
            .then(pl.lit("contaminated"))
            .when(pl.col("contaminated") == 0)
            .then(pl.lit("clean"))
            .otherwise(pl.lit("no_text")),
        )
