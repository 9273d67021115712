"""Candidate chunk boundaries in a rationale, each with a strength from what marks it.

A boundary is an offset where a new unit starts (its first non-space character; the whitespace
before it stays with the unit before, so the units of a text, joined, are the text). Marks, from
strongest: a blank line, a final-answer marker (``####``, "The answer is"), a heading or list item
on a new line, a line break, the end of a sentence, a sentence run on without punctuation (a line
break lost: "…12 pages a week So he writes…"), and a clause opened by a discourse marker
(", so", "; then"). Nothing inside a code block, a LaTeX display block (``$$…$$``, ``\\[…\\]``,
``\\begin{…}…\\end{…}``) or a calculator annotation (``<<…>>``) is a boundary. A discourse marker
("First", "Next", "So", "Therefore", …) opening the unit strengthens its boundary; a heading or a
line ending with a colon weakens the one after it (what follows belongs to it).
"""

from __future__ import annotations

import re
from typing import NamedTuple

PARAGRAPH, ANSWER, LIST_ITEM, LINE, SENTENCE, RUN_ON, NAME, CLAUSE = 1.0, 0.95, 0.9, 0.8, 0.6, 0.5, 0.3, 0.2
MARKER_BONUS = 0.1
AFTER_COLON = 0.3
EQUATION_BONUS = 0.15  # a run-on start after a sentence that already computed something (one step per line)

PROTECTED = re.compile(
    r"```.*?(?:```|\Z)|\$\$.*?(?:\$\$|\Z)|\\\[.*?(?:\\\]|\Z)|\\begin\{(\w+\*?)\}.*?(?:\\end\{\1\}|\Z)|<<[^<>\n]*>>",
    re.DOTALL,
)
NEWLINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)*(?=\S)")
LIST_START = re.compile(r"(?:[-*•+]|\d{1,3}[.)]|\(?[a-zA-Z][.)]|#{1,6}|(?:Step|Case|Part)\s+\d+\s*[:.)])\s")
HEADING = re.compile(r"#{1,6}\s|\*\*[^*]+\*\*:?$")  # "## Setting up", "**Step 1:**"
ANSWER_START = re.compile(r"####|(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)|\\boxed|A:\s", re.IGNORECASE)
SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"'”’)\]]*[ \t]+(?=[\"'“‘(\[]?[A-Z0-9$\\*])|(?<=[a-z0-9%)][.!?])(?=[A-Z](?:[a-z]|[ \t]))"
)
# A sentence run on without its full stop: "a week So he", or with its line break lost, "a weekSo he".
RUN_ON_START = re.compile(r"(?<=[\w%$)])[ \t]+(?=[A-Z][\w'’]*)|(?<=[a-z0-9%)])(?=[A-Z][a-z])")
CLAUSE_START = re.compile(
    r"(?<=[,;])[ \t]+(?=(?:so|then|therefore|thus|hence|which means|that means|meaning)\b)", re.IGNORECASE
)
ABBREVIATION = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|approx|No|Fig|Eq|e\.g|i\.e|a\.m|p\.m|[A-Z])\.)[\"'”’)\]]*[ \t]*$"
)
MARKERS = (
    "first", "second", "third", "next", "then", "so", "therefore", "thus", "hence", "finally", "now", "lastly",
    "let's", "let", "alternatively", "wait", "but", "however", "check", "verify", "to check", "in total",
    "altogether", "overall", "in summary", "to summarize", "since", "because", "after", "if", "together",
)  # fmt: skip


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Capitalised words that start sentences but are not names: a run-on boundary before them is likely.
STARTERS = _word_set(
    "the a an then so he she they it we i you if that there this these those in on at for each every since after "
    "before when while now his her their its our all both to from with over by as total together altogether "
    "therefore thus hence finally next first second third lastly however similarly because and but or one two three "
    "half let subtract add multiply divide"
)
# A capitalised word after one of these continues the sentence ("in May", "of John"): barely a boundary.
CONTINUES = _word_set("in on at of to and or with for from by than as the a an his her their named called")
CONTINUED = 0.1
RESULT = re.compile(r"(?:=|>>)[ \t]*\$?[ \t]*[\d.,]+%?$")  # "= 22", ">>22": an equation's result ends here
GLUED_ANSWER = re.compile(r"[ \t]*(?=####)|(?<=[a-z0-9.%)])(?=A:\s)")
WORD = re.compile(r"[A-Za-z][\w'’]*")
TOKEN = re.compile(r"\w+|[^\w\s]")


class Unit(NamedTuple):
    start: int
    end: int
    strength: float  # of the boundary at ``start`` (0 for the first unit)
    mark: str  # what marked it: paragraph, answer, list, line, sentence, run_on, name, clause


def count_tokens(text: str) -> int:
    """Words, numbers and punctuation marks: the length measure of chunk budgets (a proxy for model tokens)."""
    return len(TOKEN.findall(text))


def protected_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in PROTECTED.finditer(text)]


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < position < end for start, end in spans)


def _opens_with_marker(text: str, position: int) -> bool:
    head = text[position : position + 20].lower()
    return any(head.startswith(m) and not head[len(m) : len(m) + 1].isalpha() for m in MARKERS)


def _line_marks(text: str) -> dict[int, tuple[float, str]]:
    marks = {}
    for match in NEWLINES.finditer(text):
        at, gap = match.end(), match.group()
        if gap.count("\n") > 1:
            marks[at] = (PARAGRAPH, "paragraph")
        elif ANSWER_START.match(text, at):
            marks[at] = (ANSWER, "answer")
        elif LIST_START.match(text, at):
            marks[at] = (LIST_ITEM, "list")
        else:
            marks[at] = (LINE, "line")
        line = text[text.rfind("\n", 0, match.start()) + 1 : match.start()].strip()
        if HEADING.match(line) or (line.endswith(":") and marks[at][1] != "paragraph"):
            marks[at] = (AFTER_COLON, marks[at][1])  # what follows a heading or a colon belongs to it
    return marks


def _prose_marks(text: str) -> dict[int, tuple[float, str]]:
    marks: dict[int, tuple[float, str]] = {}
    for match in SENTENCE_END.finditer(text):
        if not ABBREVIATION.search(text, max(0, match.start() - 12), match.end()):
            marks[match.end()] = (SENTENCE, "sentence")
    for match in RUN_ON_START.finditer(text):
        word, before = WORD.match(text, match.end()), text[max(0, match.start() - 8) : match.start()].split()
        if before and before[-1].lower() in CONTINUES:
            marks.setdefault(match.end(), (CONTINUED, "continued"))
            continue
        starter = word is not None and (word.group().lower() in STARTERS or word.group().endswith("ing"))
        after_number = bool(before) and before[-1][-1].isdigit()
        result = RESULT.search(text, max(0, match.start() - 40), match.start()) is not None
        acronym = word is not None and sum(map(str.isupper, word.group())) > 1
        unit = (after_number and not result) or acronym
        if not starter and unit:  # "3 DVDs", "5:00 PM": a unit after a number, or an acronym
            marks.setdefault(match.end(), (CONTINUED, "continued"))
            continue
        marks.setdefault(match.end(), (RUN_ON, "run_on") if starter else (NAME, "name"))
    for match in CLAUSE_START.finditer(text):
        marks.setdefault(match.end(), (CLAUSE, "clause"))
    for match in GLUED_ANSWER.finditer(text):  # "... May. #### 72", "...per dayA: 18": a line break lost
        if match.end() > 0:
            marks[match.end()] = (ANSWER, "answer")
    return marks


def units(text: str) -> list[Unit]:
    """The text cut at every candidate boundary: contiguous units that join back into ``text``."""
    if not text:
        return []
    marks = _prose_marks(text)
    marks.update(_line_marks(text))  # a line break outranks whatever else marks the same offset
    spans = protected_spans(text)
    first = len(text) - len(text.lstrip())  # leading whitespace is no unit of its own
    positions = sorted(p for p in marks if first < p < len(text) and not _inside(p, spans))
    found, start, strength, mark, since = [], 0, 0.0, "start", 0
    for position in positions:
        found.append(Unit(start, position, strength, mark))
        strength, mark = marks[position]
        if mark in ("run_on", "name") and ("=" in text[since:position] or ">>" in text[since:position]):
            strength += EQUATION_BONUS
        if _opens_with_marker(text, position):
            strength += MARKER_BONUS
        if ANSWER_START.match(text, position):
            strength, mark = max(strength, ANSWER), "answer"
        if strength >= RUN_ON:
            since = position
        start = position
    found.append(Unit(start, len(text), strength, mark))
    return found
