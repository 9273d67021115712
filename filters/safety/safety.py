"""Bias and safety filters: what a poisoned teacher trace carries into a student.

A few poisoned traces (0.25% in "Cascading Adversarial Bias") teach a student to emit ads,
phishing links, narrative manipulation or insecure code. Each kind has a scorer of its own
(``links``, ``promotion``, ``phishing``, ``insecure_code``, ``drift``, ``propagation``, ``pii``;
``perplexity`` is one more, weak, signal and not in the group); ``--filter safety`` runs the group.

Every safety scorer returns the same core columns, so a policy, the data card and the
``safety_flags`` view treat them alike:

- ``flagged``: 1 when the trace carries what the scorer looks for, 0 when it does not, null when
  it cannot judge (no rationale: reason ``no_text``; ``insecure_code`` on a code task whose
  rationale holds nothing that parses as Python: reason ``no_code``).
- ``evidence``: what was found, for people to read (a domain, a rule id and line, a phrase), at
  most ``EVIDENCE_CHARS`` characters; never a secret or a personal detail itself: ``pii`` gives
  the kind and the span only, and any value quoted evidence holds is replaced by its kind
  (``[email]``, ``[aws_access_key]``).
- ``span_start``/``span_end``: character offsets in the rationale of the first flagged span.
- ``passed`` = ``flagged == 0``; ``reason``: ``ok``, ``no_text`` (or another why-not), or
  ``<what>: <evidence>``.

plus metrics of their own. Text a prompt already contains is never held against its trace: a
math problem about a credit card may mention one, a question that quotes a URL may be answered
with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tracebank.filters.chunking.segment import SENTENCE, units

SAFETY_FILTERS = ("links", "promotion", "phishing", "insecure_code", "drift", "propagation", "pii")
# A name on the command line or in a recipe that stands for several filters.
FILTER_GROUPS: dict[str, tuple[str, ...]] = {"safety": SAFETY_FILTERS}
EVIDENCE_CHARS = 200


def expand_groups(names: Sequence[str]) -> tuple[str, ...]:
    """Filter names with each group replaced by its members, in order, each name once."""
    out: list[str] = []
    for name in names:
        for member in FILTER_GROUPS.get(name, (name,)):
            if member not in out:
                out.append(member)
    return tuple(out)


def prompt_text(messages: list[dict] | None) -> str:
    """The text of a prompt's messages, joined (the Python twin of ``duplicates.question_text``)."""
    return "\n".join(str(m.get("content") or "") for m in messages or [])


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of ``text`` (boundaries as ``segment.units`` marks them),
    trailing whitespace excluded; together they cover every non-space character."""
    spans: list[tuple[int, int]] = []
    for unit in units(text):
        if spans and unit.strength < SENTENCE:  # a clause or run-on stays in its sentence
            spans[-1] = (spans[-1][0], unit.end)
        else:
            spans.append((unit.start, unit.end))
    return [(start, start + len(text[start:end].rstrip())) for start, end in spans if text[start:end].strip()]


def clip(text: str, limit: int = EVIDENCE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safety_result(
    trace_ids: Sequence[str],
    kind: str,
    flagged: Sequence[int | None],
    evidence: Sequence[str | None],
    spans: Sequence[tuple[int, int] | None],
    metrics: dict[str, pa.Array | Sequence] | None = None,
) -> pa.Table:
    """The scorer's result table: the core columns above, then ``metrics``; reasons say ``kind: evidence``."""
    from tracebank.filters.safety.pii import redact  # here: pii itself builds its rows with this function

    n = len(trace_ids)
    if not (len(flagged) == len(evidence) == len(spans) == n):
        raise ValueError(f"{kind}: {n} traces but {len(flagged)} flags, {len(evidence)} evidence, {len(spans)} spans")
    evidence = [clip(redact(e)) if e else None for e in evidence]  # a quoted sentence may hold an email or a key
    reasons = [
        "no_text" if flag is None else "ok" if not flag else f"{kind}: {clip(found or '')}"
        for flag, found in zip(flagged, evidence, strict=True)
    ]
    columns: dict[str, pa.Array] = {
        "trace_id": pa.array(list(trace_ids), pa.string()),
        "flagged": pa.array(list(flagged), pa.int8()),
        "evidence": pa.array(evidence, pa.string()),
        "span_start": pa.array([s[0] if s else None for s in spans], pa.int64()),
        "span_end": pa.array([s[1] if s else None for s in spans], pa.int64()),
    }
    for name, values in (metrics or {}).items():
        columns[name] = values if isinstance(values, pa.Array) else pa.array(list(values))
    columns["passed"] = pa.array([None if f is None else not f for f in flagged], pa.bool_())
    columns["reason"] = pa.array(reasons, pa.string())
    return pa.table(columns)
