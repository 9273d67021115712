"""Hint leaks: a rationalized trace that admits it was handed the answer teaches a student to cite hints.

A hinted trace (``traces.hinted``, made by ``loop/hints.py``) was asked with a note giving the
reference's final answer (``hint: answer``, the usual STaR rationalization) or the whole reference
solution (``hint: solution``). It is worth keeping only when it reads as if the teacher solved the
problem itself. The scorer flags, worst first:

- ``phrase``: wording that points at a given answer or hint: "the reference says", "as the hint
  states", "we are told the answer is", "given that the answer is", "the provided answer",
  "working backwards from the answer", ... (:data:`PHRASES`);
- ``verbatim_note``: a run of at least ``note_run_words`` words copied from the hint's note;
- ``verbatim_reference``: a run of at least ``reference_run_words`` words copied from the reference
  solution (long: a correct solution restates the same small steps in much the same words).

Text the prompt already holds (the question, the task's answer-format instruction) is never held
against the trace: "the problem says" about the question, or a question about reference books, is
no leak, and neither is "the answer is 18" on its own. Unhinted traces pass (reason ``not_hinted``);
a hinted trace without a rationale is not judged (``no_text``).

Columns: ``leaked`` (1/0, null when not judged), ``evidence`` (the phrase or copied run, at most
``safety.EVIDENCE_CHARS`` characters); ``passed`` = not leaked; reason ``ok``, ``not_hinted``,
``no_text``, or ``<kind>: <evidence>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.safety.safety import clip, prompt_text
from tracebank.tasks import get_task

HINT_MODES = ("answer", "solution")
# The note a hinted request ends with (loop/hints.py sends it; this scorer looks for copies of it).
NOTES = {
    "answer": "Hint, for you alone: the correct final answer is {answer}. Solve the problem step by step so "
    "that your reasoning reaches this answer on its own. Do not mention this hint, that you were told the "
    "answer, or that you work backwards from it: write the solution as if you had solved it yourself.",
    "solution": "Hint, for you alone: here is a reference solution.\n\n{solution}\n\nWrite your own step-by-step "
    "solution that reaches the same final answer, in your own words. Do not mention this hint or the "
    "reference solution, and do not copy it: write the solution as if you had solved it yourself.",
}
_SOURCE = r"(?:reference|hint|answer key|solution (?:key|sheet)|given solution|provided solution)"
_ANSWER = r"(?:final |correct |right |expected |target |known )?(?:answer|result|solution)"
PHRASES = re.compile(
    "|".join(
        [
            rf"\b(?:the|this|that)\s+{_SOURCE}(?:\s+(?:answer|solution))?\s+(?:says|said|states|stated|gives|gave|"
            r"shows|showed|tells|told|suggests|indicates|confirms|notes|mentions)\b",
            rf"\b(?:as|like)\s+(?:the\s+)?{_SOURCE}\s+(?:says|states|suggests|shows|indicates|gives|notes)\b",
            rf"\b(?:according\s+to|per|using|from|matches|match|matching|following|consistent\s+with)\s+the\s+{_SOURCE}\b",
            rf"\b(?:we|i)\s+(?:are|were|am|was|have\s+been|had\s+been)\s+(?:told|given|shown)\s+(?:that\s+)?the\s+{_ANSWER}",
            rf"\bgiven\s+that\s+the\s+{_ANSWER}\s+(?:is|was|must\s+be|should\s+be)\b",
            rf"\bthe\s+(?:provided|given|supplied|stated)\s+{_ANSWER}\b",
            rf"\bwork(?:ing|ed|s)?\s+backwards?\s+from\s+the\s+{_ANSWER}\b",
            rf"\b(?:we|i)\s+already\s+know\s+(?:that\s+)?the\s+{_ANSWER}\b",
            rf"\bto\s+(?:match|reach|get\s+to|arrive\s+at|hit)\s+the\s+(?:given|expected|provided|target|known)\s+{_ANSWER}\b",
            # Addressed to the asker: "the solution that you've already provided" (seen from SmolLM2).
            r"\b(?:answer|solution|hint|result)s?\s+(?:that\s+)?you(?:'ve|\s+have)?\s+(?:already\s+)?"
            r"(?:provided|given|gave|supplied|shared)\b",
            r"\byou(?:'ve|\s+have)\s+already\s+(?:provided|given|supplied|shared)\b",
            r"\b(?:the\s+)?hint\b",
        ]
    ),
    re.IGNORECASE,
)
_NOUNS = re.compile(r"\b(?:hint|reference)")
_WORD = re.compile(r"\w+")
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: "48/2 = <<48/2=24>>24"
_FINAL_LINE = re.compile(r"^\s*####.*$", re.MULTILINE)
SCHEMA = pa.schema([
    ("trace_id", pa.string()), ("leaked", pa.int8()), ("evidence", pa.string()),
    ("passed", pa.bool_()), ("reason", pa.string()),
])  # fmt: skip


def hint_note(mode: str, answer: str | None, reference: str | None) -> str:
    """The note a hinted request carries: the final ``answer``, or the whole ``reference`` solution."""
    if mode not in HINT_MODES:
        raise TracebankError(f"hint must be one of {', '.join(HINT_MODES)}, got {mode!r}")
    return NOTES[mode].format(answer=answer, solution=(reference or "").strip())


def solution_text(reference: str | None) -> str:
    """The reference as prose: calculator annotations and the '#### N' line taken out (they are not words)."""
    return _FINAL_LINE.sub("", _CALCULATOR.sub("", reference or ""))


@dataclass(frozen=True)
class HintLeakOptions:
    note_run_words: int = 8  # words in a row copied from the note that count as a leak
    reference_run_words: int = 20  # words in a row copied from the reference solution that count as a leak

    def __post_init__(self) -> None:
        for name in ("note_run_words", "reference_run_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 4 <= value <= 200:
                raise TracebankError(f"hint_leak {name} must be a whole number of words in [4, 200], got {value!r}")


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copied_run(rationale: str, source: str, n: int, allowed: str = "") -> str | None:
    """The first run of at least ``n`` words of ``rationale`` copied from ``source``, extended as far as
    it goes; runs also found in ``allowed`` (the prompt) do not count. None when there is none."""
    spans = _words(rationale)
    words = [w for w, _, _ in spans]
    shared = _grams([w for w, _, _ in _words(source)], n) - _grams([w for w, _, _ in _words(allowed)], n)
    for i in range(len(words) - n + 1):
        if tuple(words[i : i + n]) in shared:
            end = i + n
            while end < len(words) and tuple(words[end - n + 1 : end + 1]) in shared:
                end += 1
            return rationale[spans[i][1] : spans[end - 1][2]]
    return None


def _in_prompt(phrase: str, prompt: str) -> bool:
    """Whether ``phrase`` speaks of the prompt's own things: its very words, or a hint or reference the
    question itself mentions (a treasure map's hint, a library's reference shelf)."""
    folded, prompt = phrase.lower(), prompt.lower()
    nouns = _NOUNS.findall(folded)
    return folded in prompt or (bool(nouns) and all(re.search(rf"\b{noun}", prompt) for noun in nouns))


def leak(
    rationale: str, note: str, reference: str | None, prompt: str, options: HintLeakOptions
) -> tuple[str, str] | None:
    """(kind, evidence) of the worst leak in a hinted ``rationale``, or None when it reads as self-made."""
    for match in PHRASES.finditer(rationale):
        if not _in_prompt(match.group(), prompt):
            start, end = max(0, match.start() - 40), min(len(rationale), match.end() + 40)
            return "phrase", rationale[start:end]
    copied = copied_run(rationale, note, options.note_run_words, prompt)
    if copied is not None:
        return "verbatim_note", copied
    copied = copied_run(rationale, solution_text(reference), options.reference_run_words, prompt)
    return ("verbatim_reference", copied) if copied is not None else None


def _note_of(lineage: str | None) -> str:
    """The words of the note a hinted trace was asked with, rebuilt from its lineage (which holds the
    hint's kind and the answer given, never the reference)."""
    try:
        told = orjson.loads(lineage) if lineage else {}
    except orjson.JSONDecodeError:
        told = {}
    mode = told.get("hint") if isinstance(told, dict) else None
    # The reference inside a solution hint is checked apart, with the longer run (reference_run_words).
    return hint_note(mode, told.get("answer"), "") if mode in HINT_MODES else ""


class HintLeak:
    name = "hint_leak"
    version = "1"
    reads = ("trace_id", "task", "messages", "rationale", "reference", "hinted", "lineage")
    Options = HintLeakOptions

    def __init__(self, options: HintLeakOptions | None = None) -> None:
        self.options = options or HintLeakOptions()

    def score(self, table: pa.Table) -> pa.Table:
        rows: dict[str, list] = {name: [] for name in SCHEMA.names}
        for trace_id, task, messages, rationale, reference, hinted, lineage in zip(
            *(table.column(c).to_pylist() for c in self.reads), strict=True
        ):
            found, leaked, reason = None, 0, "not_hinted"
            if hinted and not rationale:
                leaked, reason = None, "no_text"
            elif hinted:
                prompt = prompt_text(get_task(task).render(messages) if messages else messages)
                found = leak(rationale, _note_of(lineage), reference, prompt, self.options)
                leaked = int(found is not None)
                reason = f"{found[0]}: {clip(found[1])}" if found else "ok"
            rows["trace_id"].append(trace_id)
            rows["leaked"].append(leaked)
            rows["evidence"].append(clip(found[1]) if found else None)
            rows["passed"].append(None if leaked is None else not leaked)
            rows["reason"].append(reason)
        return pa.table(rows, schema=SCHEMA)
