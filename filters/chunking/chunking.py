"""Rationale chunking: split every rationale into coherent steps, label them and check their arithmetic.

Per trace: candidate units (``filters.chunking.segment``) are merged into chunks by the search of
``filters.chunking.tiling`` (boundary strength and embedding coherence against a token budget); each chunk
gets a kind (``filters.chunking.chunk_kinds``), its arithmetic steps (``filters.chunking.steps``: math traces only),
whether it repeats an earlier chunk or is boilerplate (``filters.chunking.redundancy``) and a score. Chunks
are contiguous spans of the rationale, so their texts joined are the rationale, byte for byte.

Per-trace metrics (visible to policies as ``chunking.<metric>``): ``chunks``, ``checked_steps``,
``wrong_steps``, ``step_correctness`` (right / checked; null when nothing was checked),
``first_wrong_step`` (0-based, among checked steps), ``first_wrong_chunk``, ``wrong_step`` (the
first wrong step as written, and its value), ``redundant_chunks``, ``boilerplate_chunks``,
``skippable_chunks`` (non-reasoning kinds), ``kinds`` (e.g. ``compute:3 answer:1``) and
``right_answer_wrong_step`` (1: verified-correct answer reached through a wrong step; null when
correctness is unknown). Reasons: ``right_answer_wrong_step``, ``wrong_step``, ``repetitive`` (at
least ``repetitive_fraction`` of the chunks, and two or more, repeat earlier ones), ``ok``;
``no_rationale`` is not judged. A chunk's score is the fraction of its checked steps that are
right (1 when none), 0 for a repeat, halved for boilerplate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tracebank.errors import TracebankError, check_at_least
from tracebank.filters.base import stored_version
from tracebank.filters.chunking.chunk_kinds import NON_REASONING, ChunkFacts, exemplar_similarities, label, numbers
from tracebank.filters.chunking.redundancy import boilerplate, repeats
from tracebank.filters.chunking.segment import Unit, count_tokens, units
from tracebank.filters.chunking.steps import Step, find_steps
from tracebank.filters.chunking.tiling import Budget, best_cuts, gains, spans
from tracebank.filters.diversity.embeddings import DEFAULT_MODEL, check_model, get_embedder
from tracebank.filters.diversity.exact import question_text

BLOCK = 2000  # traces segmented and embedded together: bounds the unit vectors held
UNCHECKED_TASKS = ("code",)  # assignments and comparisons in code are not arithmetic claims


@dataclass(frozen=True)
class ChunkingOptions:
    min_tokens: int = 6  # chunk budget, in words and punctuation marks (filters.chunking.segment.count_tokens)
    max_tokens: int = 160
    boundary_cost: float = 0.4  # what a cut must earn (boundary strength + coherence dip)
    coherence_weight: float = 0.25  # weight of the embedding similarity dip at a boundary
    window: int = 2  # units each side of a boundary compared (TextTiling block size)
    embeddings: bool = True  # embed units (coherence, kinds by similarity); false: rules and lengths only
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    arithmetic: bool = True  # check arithmetic steps (math and text tasks)
    repeat_threshold: float = 0.8  # word 3-gram Jaccard at or above which a chunk repeats an earlier one
    boilerplate_prompts: int = 5  # a chunk text seen for this many questions is boilerplate
    repetitive_fraction: float = 0.25
    restate_similarity: float = 0.8  # question similarity at or above which an early chunk restates it

    def __post_init__(self) -> None:
        check_at_least(self, 1, "batch_size", "boilerplate_prompts")
        self.budget()
        for name in ("repeat_threshold", "repetitive_fraction", "restate_similarity"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise TracebankError(f"{name} must be in (0, 1], got {value!r}")
        if self.embeddings:
            check_model(self.model)

    def budget(self) -> Budget:
        return Budget(
            min_tokens=self.min_tokens, max_tokens=self.max_tokens, boundary_cost=self.boundary_cost,
            coherence_weight=self.coherence_weight, window=self.window,
        )  # fmt: skip


@dataclass
class Chunked:
    """One trace's chunks, with everything scored about them."""

    trace_id: str
    question: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    steps: list[list[Step]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    repeat_of: list[int | None] = field(default_factory=list)
    boilerplate: list[bool] = field(default_factory=list)


def _embed(texts: list[str], options: ChunkingOptions) -> np.ndarray:
    """Vectors of ``texts``, each distinct text embedded once ("A: 18", boilerplate and questions repeat)."""
    distinct = list(dict.fromkeys(texts))
    where = {text: i for i, text in enumerate(distinct)}
    vectors = get_embedder(options.model).encode(distinct, batch_size=options.batch_size)
    return vectors[[where[text] for text in texts]]


def _chunk_vectors(vectors: np.ndarray, cuts: list[int]) -> np.ndarray:
    """Unit-length mean of each chunk's unit vectors."""
    sums = np.add.reduceat(vectors, cuts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.where(norms > 0, norms, 1)


def _steps_per_chunk(text: str, chunk_spans: list[tuple[int, int]], check: bool) -> list[list[Step]]:
    per_chunk: list[list[Step]] = [[] for _ in chunk_spans]
    if check:
        starts = [start for start, _ in chunk_spans]
        for step in find_steps(text):
            per_chunk[bisect_right(starts, step.anchor) - 1].append(step)
    return per_chunk


def _label_all(trace: Chunked, text: str, options: ChunkingOptions, prompt_sims, exemplar_sims) -> None:
    seen = asked = frozenset(numbers(trace.question))
    for i, (start, end) in enumerate(trace.spans):
        facts = ChunkFacts(
            text[start:end], i, trace.tokens[i], len(trace.steps[i]), trace.question, seen, asked,
            None if prompt_sims is None else float(prompt_sims[i]),
            None if exemplar_sims is None else exemplar_sims[i],
        )  # fmt: skip
        kind, features = label(facts, options.restate_similarity)
        trace.kinds.append(kind)
        trace.features.append(features)
        seen = seen | numbers(facts.text)


def _chunk_block(rows: list[dict[str, Any]], options: ChunkingOptions) -> list[Chunked]:
    """Chunk, label and check one block of traces (rows with a non-empty rationale)."""
    budget = options.budget()
    pieces = [units(row["rationale"]) for row in rows]
    vectors = unit_vectors = question_vectors = None
    if options.embeddings:
        texts = [
            row["rationale"][u.start : u.end].strip() or " " for row, us in zip(rows, pieces, strict=True) for u in us
        ]
        vectors = _embed(texts + [row["question"] or " " for row in rows], options)
        unit_vectors, question_vectors = vectors[: len(texts)], vectors[len(texts) :]
    out, offset = [], 0
    for k, (row, found) in enumerate(zip(rows, pieces, strict=True)):
        mine = None if unit_vectors is None else unit_vectors[offset : offset + len(found)]
        offset += len(found)
        out.append(
            _chunk_one(row, found, mine, None if question_vectors is None else question_vectors[k], budget, options)
        )
    return out


def _chunk_one(row: dict[str, Any], found: list[Unit], vectors, question_vector, budget: Budget, options) -> Chunked:
    text = row["rationale"]
    trace = Chunked(row["trace_id"], row["question"] or "")
    unit_tokens = [count_tokens(text[u.start : u.end]) for u in found]
    cuts = best_cuts(found, unit_tokens, gains(found, vectors, budget), budget)
    trace.spans = spans(found, cuts)
    trace.tokens = [int(t) for t in np.add.reduceat(unit_tokens, cuts)]
    trace.steps = _steps_per_chunk(text, trace.spans, options.arithmetic and row["task"] not in UNCHECKED_TASKS)
    prompt_sims = exemplar_sims = None
    if vectors is not None:
        chunk_vectors = _chunk_vectors(vectors, cuts)
        prompt_sims = np.round(chunk_vectors @ question_vector, 3)
        exemplar_sims = exemplar_similarities(chunk_vectors, options.model)
    _label_all(trace, text, options, prompt_sims, exemplar_sims)
    trace.repeat_of = repeats([text[s:e] for s, e in trace.spans], options.repeat_threshold)
    return trace


def chunk_score(steps: list[Step], repeat_of: int | None, shared: bool) -> float:
    """Right steps / checked steps (1 when none), 0 for a repeat, halved for boilerplate."""
    if repeat_of is not None:
        return 0.0
    value = sum(s.ok for s in steps) / len(steps) if steps else 1.0
    return value / 2 if shared else value


def chunk_rows(traces: list[Chunked], rationales: dict[str, str], scorer: str) -> pa.Table:
    """Rows for the ``chunks`` table (less dataset and run_id, which the runner adds)."""
    rows = []
    for trace in traces:
        text = rationales[trace.trace_id]
        for i, (start, end) in enumerate(trace.spans):
            steps = trace.steps[i]
            rows.append({
                "trace_id": trace.trace_id, "chunk_idx": i, "text": text[start:end], "char_start": start,
                "char_end": end, "kind": trace.kinds[i],
                "score": chunk_score(steps, trace.repeat_of[i], trace.boilerplate[i]), "scorer": scorer,
                "tokens": trace.tokens[i], "checked_steps": len(steps), "wrong_steps": sum(not s.ok for s in steps),
                "redundant_of": trace.repeat_of[i], "boilerplate": bool(trace.boilerplate[i]),
                "features": trace.features[i],
            })  # fmt: skip
    return pa.Table.from_pylist(rows, schema=CHUNK_ROWS)


CHUNK_ROWS = pa.schema([
    ("trace_id", pa.string()), ("chunk_idx", pa.int32()), ("text", pa.string()), ("char_start", pa.int64()),
    ("char_end", pa.int64()), ("kind", pa.string()), ("score", pa.float64()), ("scorer", pa.string()),
    ("tokens", pa.int32()), ("checked_steps", pa.int32()), ("wrong_steps", pa.int32()),
    ("redundant_of", pa.int32()), ("boilerplate", pa.bool_()), ("features", pa.string()),
])  # fmt: skip
# What the runner compares to decide whether a trace's stored chunks changed (all but the key).
CHUNK_COLUMNS = tuple(name for name in CHUNK_ROWS.names if name != "trace_id")


def _first_wrong(trace: Chunked) -> tuple[int | None, int | None, str | None]:
    """(ordinal among checked steps, chunk index, the step as written with its value) of the first wrong step."""
    ordinal = 0
    for chunk, steps in enumerate(trace.steps):
        for step in steps:
            if not step.ok:
                return ordinal, chunk, f"{step.text.strip()} (is {step.value:.6g})"
            ordinal += 1
    return None, None, None


def trace_metrics(trace: Chunked, correct: int | None, options: ChunkingOptions) -> dict[str, Any]:
    """The per-trace roll-up: counts, first wrong step, passed and reason."""
    checked = sum(len(s) for s in trace.steps)
    wrong = sum(not step.ok for steps in trace.steps for step in steps)
    repeated = sum(r is not None for r in trace.repeat_of)
    ordinal, chunk, written = _first_wrong(trace)
    kinds = Counter(trace.kinds)
    right_wrong = None if correct is None else int(correct == 1 and wrong > 0)
    if right_wrong:
        reason = "right_answer_wrong_step"
    elif wrong:
        reason = "wrong_step"
    elif repeated >= 2 and repeated >= options.repetitive_fraction * len(trace.spans):
        reason = "repetitive"
    else:
        reason = "ok"
    return {
        "trace_id": trace.trace_id, "chunks": len(trace.spans), "checked_steps": checked, "wrong_steps": wrong,
        "step_correctness": (checked - wrong) / checked if checked else None, "first_wrong_step": ordinal,
        "first_wrong_chunk": chunk, "wrong_step": written, "redundant_chunks": repeated,
        "boilerplate_chunks": int(sum(trace.boilerplate)), "skippable_chunks": sum(kinds[k] for k in NON_REASONING),
        "kinds": " ".join(f"{k}:{n}" for k, n in sorted(kinds.items())), "right_answer_wrong_step": right_wrong,
        "passed": reason == "ok", "reason": reason,
    }  # fmt: skip


TRACE_SCHEMA = {
    "trace_id": pl.String, "chunks": pl.Int64, "checked_steps": pl.Int64, "wrong_steps": pl.Int64,
    "step_correctness": pl.Float64, "first_wrong_step": pl.Int64, "first_wrong_chunk": pl.Int64,
    "wrong_step": pl.String, "redundant_chunks": pl.Int64, "boilerplate_chunks": pl.Int64,
    "skippable_chunks": pl.Int64, "kinds": pl.String, "right_answer_wrong_step": pl.Int8, "passed": pl.Boolean,
    "reason": pl.String,
}  # fmt: skip


class Chunking:
    name = "chunking"
    version = "1"
    reads = ("trace_id", "prompt_id", "messages", "rationale", "correct", "task")
    Options = ChunkingOptions

    def __init__(self, options: ChunkingOptions | None = None):
        self.options = options or ChunkingOptions()
        self._chunks = pa.Table.from_pylist([], schema=CHUNK_ROWS)

    def score(self, table: pa.Table) -> pa.Table:
        frame = pl.from_arrow(table.select(list(self.reads))).with_columns(question=question_text(pl.col("messages")))
        judged = frame.filter(pl.col("rationale").str.strip_chars().str.len_chars() > 0)
        rows = judged.select("trace_id", "prompt_id", "rationale", "question", "task", "correct").to_dicts()
        traces = [
            t for start in range(0, len(rows), BLOCK) for t in _chunk_block(rows[start : start + BLOCK], self.options)
        ]
        _mark_boilerplate(traces, rows, self.options.boilerplate_prompts)
        rationales = {row["trace_id"]: row["rationale"] for row in rows}
        self._chunks = chunk_rows(traces, rationales, f"{self.name}/{stored_version(self)}")
        correct = {row["trace_id"]: row["correct"] for row in rows}
        metrics = pl.DataFrame(
            [trace_metrics(t, correct[t.trace_id], self.options) for t in traces], schema=TRACE_SCHEMA
        )
        every = frame.select("trace_id").join(metrics, on="trace_id", how="left", maintain_order="left")
        return every.with_columns(reason=pl.col("reason").fill_null("no_rationale")).to_arrow()

    def outputs(self) -> dict[str, pa.Table]:
        return {"chunks": self._chunks}


def _mark_boilerplate(traces: list[Chunked], rows: list[dict[str, Any]], min_prompts: int) -> None:
    by_id = {row["trace_id"]: row for row in rows}
    texts, questions = [], []
    for trace in traces:
        text = by_id[trace.trace_id]["rationale"]
        for (start, end), kind in zip(trace.spans, trace.kinds, strict=True):
            texts.append("" if kind == "answer" else text[start:end])  # "#### 18": shared answers are not boilerplate
            questions.append(trace.question)
    shared = boilerplate(texts, questions, min_prompts).tolist()
    at = 0
    for trace in traces:
        trace.boilerplate = shared[at : at + len(trace.spans)]
        at += len(trace.spans)
