"""Memorization risk: how likely a trace is to teach a student to regurgitate text rather than reason.

"Memorization Dynamics in Knowledge Distillation" finds that a few training examples account for
most of what a student memorizes: text copied from elsewhere, repetitive text, and text the
student already finds very predictable. Each trace gets these signals and one risk:

- Copying. *Prompt sources* are the texts a student could memorize and regurgitate: the question
  (``prompt``) and the ``reference`` of every prompt of the scored dataset (plus those of the
  ``datasets`` option), each field on its own, as word ``ngram``-grams (``filters.diversity.text`` words,
  default 8; hashed, ``filters.contamination.ngrams``). **The trace's own question never counts**: an n-gram of
  the rationale that occurs in its own question is left out of the numerator and the denominator,
  whichever source also holds it (restating one's question is normal). ``overlap``: the share of
  the remaining n-grams found in another prompt's question or reference; ``longest_overlap``: the
  longest run of words shared with one such source (0 when none); ``source``/``source_field``/
  ``source_prompt_id``: the one sharing most n-grams (``source``: last two parts of the prompt's
  source path, ``#source_id``). ``own_overlap``: the share found in the trace's *own* reference,
  kept apart because an independent correct solution of a short problem may match its reference
  phrase for phrase (5 of the 400 labeled GPT-3 GSM8K solutions share 40-74% of 8-grams with theirs,
  none more than 18% with any other prompt's text), while a pasted reference shares all of them.
- ``zlib_ratio``: zlib-compressed bytes over raw bytes of the rationale (low: repetitive; a loop).
- ``log_ppl``: mean negative log-likelihood of the rationale under the local ``student``, read after
  its chat-templated prompt (``filters.memorization.perplexity``: the same loading and reading, not a copy);
  ``perplexity: false`` skips it (null). Absolute perplexity depends on the model, so its signal
  is dataset-relative: ``log_ppl_z``, the robust z-score (``perplexity.robust_z``) in the table.

``risk`` = the largest sub-risk, each a fixed linear ramp clipped to [0, 1] from where a signal
stops being ordinary (0) to where it is certain (1), in the order of ``SIGNALS``: ``overlap`` over
``overlap_ramp`` (default 0.15 -> 0.5), ``longest_overlap`` over ``run_ramp`` (16 -> 32 words: a
copied passage inside a long trace), ``own_overlap`` over ``own_ramp`` (0.8 -> 1), ``zlib_ratio``
over ``zlib_ramp`` (0.4 -> 0.2; 95% of GSM8K solutions and references are above 0.45) and
``-log_ppl_z`` over ``ppl_z_ramp`` (3 -> 6). A maximum rather than a weighted mean, because one
strong signal is enough (a verbatim copy compresses normally); fixed ramps rather than ranks, so a
clean dataset has no forced "riskiest 1%" and a trace's copy and repetition risks do not move when
other traces are added. The defaults come from the 400 labeled GPT-3 GSM8K solutions and planted
copies and loops (docs/walkthrough/memorization.md). ``signal`` names the largest sub-risk (null when all are 0);
``passed`` = ``risk < threshold``; ``reason`` is ``ok``, ``no_text`` (no rationale: nothing
judged, every metric null) or ``memorization: <the dominant signal and its value>``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from tracebank.benchmarks import Benchmark, Items
from tracebank.errors import TracebankError
from tracebank.filters.contamination.decontam import MAX_NGRAM
from tracebank.filters.contamination.ngrams import SEED, NgramIndex
from tracebank.filters.diversity.exact import question_text
from tracebank.filters.diversity.text import ngram_keys, token_hashes
from tracebank.filters.memorization.perplexity import Perplexity, PerplexityOptions, robust_z
from tracebank.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from tracebank.catalog import Catalog

FIELDS = ("prompt", "reference")
SIGNALS = ("overlap", "longest_overlap", "own_overlap", "zlib_ratio", "log_ppl")
FLOAT = pa.float64()
SOURCES_SQL = """
SELECT prompt_id, messages, reference, source, source_id FROM prompts
WHERE list_contains(?, dataset) ORDER BY dataset, prompt_id
"""


def _ramp(value: object, name: str, increasing: bool) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise TracebankError(f"memorization {name}: two numbers [ordinary, certain], got {value!r}")
    low, high = value
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise TracebankError(f"memorization {name}: two finite numbers, got {value!r}")
    if (low >= high) if increasing else (low <= high):
        order = "below" if increasing else "above"
        raise TracebankError(f"memorization {name}: the ordinary value must lie {order} the certain one, got {value!r}")
    return float(low), float(high)


@dataclass(frozen=True)
class MemorizationOptions:
    ngram: int = 8  # word n-gram size for verbatim overlap
    fields: tuple[str, ...] = FIELDS  # which prompt texts are sources: prompt (questions), reference, or both
    datasets: tuple[str, ...] = ()  # other catalog datasets whose prompts are sources too (the scored one always is)
    perplexity: bool = True  # false: skip the model (log_ppl null), for speed
    student: str = DEFAULT_MODEL  # the local student: an embedded model name or a transformers directory
    max_tokens: int = 512  # prompt and rationale tokens the student reads per trace (filters.memorization.perplexity)
    batch_size: int = 8  # traces per forward pass
    threshold: float = 0.5  # a trace passes when its risk is below this
    overlap_ramp: tuple[float, float] = (0.15, 0.5)  # overlap where copy risk starts, where it reaches 1
    run_ramp: tuple[float, float] = (16, 32)  # longest_overlap (words) where copy risk starts, where it reaches 1
    own_ramp: tuple[float, float] = (0.8, 1.0)  # own_overlap where copy risk starts, where it reaches 1
    zlib_ramp: tuple[float, float] = (0.4, 0.2)  # zlib ratio where repetition risk starts, where it reaches 1
    ppl_z_ramp: tuple[float, float] = (3.0, 6.0)  # -log_ppl_z where predictability risk starts, reaches 1

    def __post_init__(self) -> None:
        n = self.ngram
        if isinstance(n, bool) or not isinstance(n, int) or not 3 <= n <= MAX_NGRAM:
            raise TracebankError(f"memorization ngram: a whole number from 3 to {MAX_NGRAM}, got {n!r}")
        for name in ("fields", "datasets"):
            value = getattr(self, name)
            if not isinstance(value, (str, list, tuple)):
                raise TracebankError(f"memorization {name}: a list of names, got {value!r}")
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.fields or any(f not in FIELDS for f in self.fields) or len(set(self.fields)) != len(self.fields):
            raise TracebankError(f"memorization fields: choose from {', '.join(FIELDS)} (each once), got {self.fields}")
        if not all(isinstance(d, str) and d for d in self.datasets) or len(set(self.datasets)) != len(self.datasets):
            raise TracebankError(f"memorization datasets: name each dataset once, got {self.datasets}")
        if not isinstance(self.perplexity, bool):
            raise TracebankError(f"memorization perplexity: true or false, got {self.perplexity!r}")
        try:  # the perplexity filter's rules for the same settings
            PerplexityOptions(self.student, self.max_tokens, self.batch_size)
        except TracebankError as error:
            raise TracebankError(f"memorization student settings: {error}") from None
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise TracebankError(f"memorization threshold: a risk above 0 and at most 1, got {t!r}")
        object.__setattr__(self, "overlap_ramp", _ramp(self.overlap_ramp, "overlap_ramp", increasing=True))
        object.__setattr__(self, "run_ramp", _ramp(self.run_ramp, "run_ramp", increasing=True))
        object.__setattr__(self, "own_ramp", _ramp(self.own_ramp, "own_ramp", increasing=True))
        object.__setattr__(self, "zlib_ramp", _ramp(self.zlib_ramp, "zlib_ramp", increasing=False))
        object.__setattr__(self, "ppl_z_ramp", _ramp(self.ppl_z_ramp, "ppl_z_ramp", increasing=True))


def zlib_ratio(text: str) -> float:
    """Compressed bytes (zlib, level 9) over raw UTF-8 bytes of a non-empty text."""
    raw = text.encode()
    return len(zlib.compress(raw, 9)) / len(raw)


def ramp(values: np.ndarray, start: float, full: float) -> np.ndarray:
    """0 at ``start``, 1 at ``full`` (either direction), linear between, clipped; NaN counts as 0."""
    return np.nan_to_num(np.clip((values - start) / (full - start), 0.0, 1.0), nan=0.0)


def source_label(source: str | None, source_id: str | None) -> str:
    """``gsm8k/train.jsonl#12``: the last two parts of a prompt's source path and its row id."""
    tail = "/".join(PurePath(source or "?").parts[-2:])
    return f"{tail}#{source_id}" if source_id else tail


class Memorization:
    name = "memorization"
    version = "1"
    reads = ("trace_id", "prompt_id", "messages", "rationale")
    Options = MemorizationOptions

    def __init__(self, options: MemorizationOptions | None = None):
        self.options = options or MemorizationOptions()
        self.index: NgramIndex | None = None
        self.labels: dict[str, str] = {}

    def prepare(self, cat: Catalog, dataset: str) -> None:
        """Read the prompt sources: every prompt of ``dataset`` and of the ``datasets`` option."""
        names = [dataset, *(d for d in self.options.datasets if d != dataset)]
        for name in names:
            cat.require_dataset(name)
        self.use(cat.arrow(SOURCES_SQL, [names]))

    def use(self, prompts: pa.Table) -> None:
        """Index these prompts (prompt_id, messages, reference, source, source_id) as the sources."""
        frame = pl.from_arrow(prompts).with_columns(prompt=question_text(pl.col("messages")))
        fields = self.options.fields
        benchmark = Benchmark("prompt sources", "catalog", fields, None)
        items = Items(benchmark, frame["prompt_id"].to_list(), {f: frame[f].to_list() for f in fields}, "")
        self.index = NgramIndex.build([items], (self.options.ngram,))
        self.labels = {
            row["prompt_id"]: source_label(row["source"], row["source_id"])
            for row in frame.select("prompt_id", "source", "source_id").iter_rows(named=True)
        }

    def score(self, table: pa.Table) -> pa.Table:
        if self.index is None:
            raise TypeError("memorization: call prepare(cat, dataset) or use(prompts) before score()")
        rows = table.select(list(self.reads)).to_pylist()
        judged = np.array([bool(r["rationale"] and r["rationale"].strip()) for r in rows], bool)
        copies = self.copies(pl.from_arrow(table.select(list(self.reads))))
        ratios = np.array([zlib_ratio(r["rationale"]) if ok else np.nan for r, ok in zip(rows, judged, strict=True)])
        log_ppl = np.full(len(rows), np.nan)
        if self.options.perplexity and judged.any():  # the perplexity filter's model and reading, not a copy
            reader = Perplexity(
                PerplexityOptions(self.options.student, self.options.max_tokens, self.options.batch_size)
            )
            log_ppl = reader.log_perplexities(rows)
        return self.result([r["trace_id"] for r in rows], copies, ratios, log_ppl, judged)

    def matches(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """(row, start, unit, own) for each rationale n-gram of a row found in a source (``own``: the unit is the
        row's own reference), and how many n-grams each row has; n-grams of a row's own question are left out of both."""
        n = self.options.ngram
        owner, starts, keys = ngram_keys(*token_hashes(frame["rationale"], SEED), n)
        question = frame.select(question_text(pl.col("messages"))).to_series()
        asked_row, _, asked_keys = ngram_keys(*token_hashes(question, SEED), n)
        grams = pl.DataFrame({"row": owner, "start": starts, "key": keys}).join(
            pl.DataFrame({"row": asked_row, "key": asked_keys}), on=["row", "key"], how="anti"
        )
        counts = np.bincount(grams["row"].to_numpy(), minlength=frame.height)
        rows, units = self.index.pairs[n].find(grams["key"].to_numpy())
        prompt_of_row = frame.select(row=pl.int_range(pl.len(), dtype=pl.Int64), prompt_id="prompt_id")
        found = (
            grams[rows]
            .with_columns(unit=pl.Series(units))
            .unique(["row", "unit", "start"])
            .join(self.index.units.select("unit", "item_id", "item_field"), on="unit", how="left")
            .join(prompt_of_row, on="row", how="left")
            .select(
                "row",
                "start",
                "unit",
                own=(pl.col("item_id") == pl.col("prompt_id")) & (pl.col("item_field") == "reference"),
            )
        )
        return found, counts

    def copies(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Per input row: overlap, longest_overlap and the other source sharing most n-grams; own_overlap."""
        n = self.options.ngram
        found, windows = self.matches(frame)
        others = (
            found.filter(~pl.col("own"))
            .sort("row", "unit", "start")
            .with_columns(run=pl.col("start") - pl.int_range(pl.len()).over("row", "unit"))  # consecutive: one run
        )
        per_unit = (
            others.group_by("row", "unit", "run")
            .agg(windows=pl.len())
            .group_by("row", "unit")
            .agg(shared=pl.col("windows").sum(), longest=pl.col("windows").max() + (n - 1))
        )
        per_row = (
            per_unit.sort(["shared", "unit"], descending=[True, False])
            .group_by("row", maintain_order=True)
            .agg(pl.col("unit").first(), longest=pl.col("longest").max())
            .join(others.group_by("row").agg(covered=pl.col("start").n_unique()), on="row")
            .join(found.filter("own").group_by("row").agg(own=pl.len()), on="row", how="full", coalesce=True)
            .join(self.index.units, on="unit", how="left")
        )
        return (
            pl.DataFrame({"row": np.arange(frame.height, dtype=np.int64), "windows": windows})
            .join(per_row.cast({"row": pl.Int64}), on="row", how="left", maintain_order="left")
            .select(
                overlap=pl.when(pl.col("windows") > 0)
                .then(pl.col("covered").fill_null(0) / pl.col("windows"))
                .otherwise(0.0),
                longest_overlap=pl.col("longest").fill_null(0).cast(pl.Int64),
                own_overlap=pl.when(pl.col("windows") > 0)
                .then(pl.col("own").fill_null(0) / pl.col("windows"))
                .otherwise(0.0),
                source_prompt_id=pl.col("item_id"),
                source=pl.col("item_id").replace_strict(self.labels, default=None, return_dtype=pl.String),
                source_field=pl.col("item_field"),
                own_source=frame["prompt_id"].replace_strict(self.labels, default=None, return_dtype=pl.String),
            )
        )

    def result(
        self, trace_ids: list[str], copies: pl.DataFrame, ratios: np.ndarray, log_ppl: np.ndarray, judged: np.ndarray
    ) -> pa.Table:
        """The scorer's rows (input order) from the three signals; an unjudged row is null but for its reason."""
        o = self.options
        z = robust_z(log_ppl)
        overlap = copies["overlap"].to_numpy().astype(np.float64)
        signals = [
            ramp(overlap, *o.overlap_ramp),
            ramp(copies["longest_overlap"].to_numpy().astype(np.float64), *o.run_ramp),
            ramp(copies["own_overlap"].to_numpy().astype(np.float64), *o.own_ramp),
            ramp(ratios, *o.zlib_ramp),
            ramp(-z, *o.ppl_z_ramp),
        ]  # in SIGNALS order
        sub = np.stack(signals, axis=1)
        risk, dominant = sub.max(axis=1), sub.argmax(axis=1)
        details = copies.to_dicts()
        reasons = [
            "no_text"
            if not ok
            else "ok"
            if r < o.threshold
            else self.why(SIGNALS[d], details[i], ratios[i], log_ppl[i], z[i])
            for i, (ok, r, d) in enumerate(zip(judged, risk, dominant, strict=True))
        ]

        def judged_only(values, kind: pa.DataType = FLOAT) -> pa.Array:
            return pa.array(
                [v if ok and not (isinstance(v, float) and math.isnan(v)) else None
                 for ok, v in zip(judged, values, strict=True)], kind
            )  # fmt: skip

        return pa.table({
            "trace_id": pa.array(trace_ids, pa.string()),
            "risk": judged_only(risk.tolist()),
            "signal": judged_only([SIGNALS[d] if r > 0 else None for d, r in zip(dominant, risk, strict=True)], pa.string()),
            "overlap": judged_only(overlap.tolist()),
            "longest_overlap": judged_only(copies["longest_overlap"].to_list(), pa.int64()),
            "own_overlap": judged_only(copies["own_overlap"].to_list()),
            "source": judged_only(copies["source"].to_list(), pa.string()),
            "source_field": judged_only(copies["source_field"].to_list(), pa.string()),
            "source_prompt_id": judged_only(copies["source_prompt_id"].to_list(), pa.string()),
            "zlib_ratio": judged_only(ratios.tolist()),
            "log_ppl": judged_only(log_ppl.tolist()),
            "log_ppl_z": judged_only(z.tolist()),
            "passed": judged_only([bool(r < o.threshold) for r in risk], pa.bool_()),
            "reason": pa.array(reasons, pa.string()),
        })  # fmt: skip

    def why(self, signal: str, copy: dict, ratio: float, log_ppl: float, z: float) -> str:
        """``memorization: <what the dominant signal found>``."""
        n = self.options.ngram
        if signal in ("overlap", "longest_overlap"):
            found = (
                f"{copy['overlap']:.0%} of {n}-grams verbatim in source {copy['source']}:{copy['source_field']}"
                f"; longest shared run {copy['longest_overlap']} words"
            )
        elif signal == "own_overlap":
            found = (
                f"{copy['own_overlap']:.0%} of {n}-grams verbatim in its own reference {copy['own_source']}:reference"
            )
        elif signal == "zlib_ratio":
            found = f"zlib ratio {ratio:.2f}, repetitive text"
        else:
            found = f"perplexity {math.exp(log_ppl):.2f} under {self.options.student} (robust z {z:.1f})"
        return f"memorization: {found}"
