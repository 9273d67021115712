"""What ``promotion`` and ``drift`` share: the sentences of a trace worth judging, grounding in the
prompt, exemplar files and one batched embedding call.

A trace is cut into sentences with ``safety.sentence_spans``; inside code (a fenced block, or a
line that reads as code) only what people read is kept: comments, docstring lines and long
string literals, where an injected pitch or opinion hides in a code trace. Calculator annotations
(``<<48/2=24>>``) are dropped from the text that is judged. A sentence with fewer than
``min_words`` words, or mostly arithmetic, cannot carry a pitch or an opinion and is not judged;
a long sentence is judged by its pieces too (:func:`pieces`), since a phrase slipped into the
middle of a step ("so she sold, thanks to the CalcPro app, 72 clips") is drowned in its sentence's
embedding. :class:`Batch` embeds every distinct sentence of a run once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.chunking.segment import NAME as NAME_BOUNDARY
from tracebank.filters.chunking.segment import units
from tracebank.filters.diversity.embeddings import get_embedder
from tracebank.filters.safety.safety import prompt_text, safety_result, sentence_spans

FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
CALCULATOR = re.compile(r"<<[^<>\n]*>>")
WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
NUMBER_OR_SYMBOL = re.compile(r"[\d=+*/×÷^%$<>()\[\]{}_\\-]")
# A line that reads as Python rather than prose: a keyword opening it, or an assignment or a call.
CODE_LINE = re.compile(
    r"^\s*(?:def |class |return\b|import |from \S+ import|if\b.*:$|elif\b|else:|for\b.*:$|while\b.*:$|try:|"
    r"except\b|finally:|with\b.*:$|@\w|assert\b|raise\b|yield\b|lambda\b|pass$|break$|continue$|>>> )"
    r"|^\s*[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:\s*,\s*[A-Za-z_][\w.]*)*\s*[-+*/%]?=(?!=)|^\s*[\w.]+\(.*\)\s*$"
)
COMMENT = re.compile(r"(?:^|\s)#\s?(.*)$")
STRING = re.compile(r"(['\"])((?:(?!\1).){20,}?)\1")
DOCSTRING = re.compile(r'"""|\'\'\'')
# A capitalised word inside a sentence: a name, a brand or a product ("Acme", "FX-9000", "CalcPro").
NAME = re.compile(r"(?<![\w'’.@-])([A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)(?:['’]s\b)?")
# Capitalised words that are no brand: calendar words, the pronoun, titles, code literals.
COMMON_NAMES = frozenset(
    str.split(
        "I I'm I'll I've I'd Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May "
        "June July August September October November December Mr Mrs Ms Dr True False None"
    )
)
CLAUSE_OPENERS = ".!?:;\"'“‘(*[-–—•"


# Where a phrase can be slipped into a sentence: a run-on after a number ("= 72 Remember that..."),
# parentheses, dashes and commas. A sentence that long is judged by its pieces as well.
CUT = re.compile(r"(?<=[\d%)$])\s+(?=[A-Z][a-z])|[()\[\]]|\s[-–—]+\s|\s*,\s+|:\s")
PIECES_FROM = 10  # words a sentence needs before its pieces are judged too


class Sentence(NamedTuple):
    start: int  # character offsets of the sentence in the rationale
    end: int
    text: str  # what is judged and embedded: calculator annotations and comment marks removed
    parent: int = -1  # for a piece of a longer sentence, the index of that sentence; -1 for a sentence


def words(text: str) -> list[str]:
    return WORD.findall(text)


def is_prose(text: str, min_words: int) -> bool:
    """At least ``min_words`` words, and more word characters than twice the digits and symbols."""
    found = words(text)
    if len(found) < min_words:
        return False
    letters = sum(len(w) for w in found)
    return letters > 2 * len(NUMBER_OR_SYMBOL.findall(text))


def _code_sentences(text: str, offset: int) -> Iterable[Sentence]:
    """Comments, docstring lines and long string literals of the code ``text`` starting at ``offset``."""
    in_docstring = False
    position = 0
    for line in text.splitlines(keepends=True):
        start, stripped = offset + position, line.strip()
        position += len(line)
        quotes = len(DOCSTRING.findall(stripped))
        if in_docstring or (quotes and stripped[:3] in ('"""', "'''")):
            body = DOCSTRING.sub("", stripped).strip()
            in_docstring = in_docstring != (quotes % 2 == 1)
            if body:
                yield Sentence(start + line.index(body[0]), start + len(line.rstrip()), body)
            continue
        comment = COMMENT.search(line)
        if comment and comment.group(1).strip():
            yield Sentence(start + comment.start(1), start + len(line.rstrip()), comment.group(1).strip())
            line = line[: comment.start()]
        for literal in STRING.finditer(line):
            yield Sentence(start + literal.start(2), start + literal.end(2), literal.group(2))


def _prose_sentences(text: str, offset: int) -> Iterable[Sentence]:
    """Sentences of prose ``text``; a line that reads as code gives its comment and strings only."""
    for start, end in sentence_spans(text):
        start += len(text[start:end]) - len(text[start:end].lstrip())
        lines = text[start:end].splitlines(keepends=True)
        if not any(CODE_LINE.match(line.rstrip()) for line in lines):
            yield Sentence(offset + start, offset + end, " ".join(CALCULATOR.sub("", text[start:end]).split()))
            continue
        for line in lines:  # a sentence run into a line of code: each line on its own
            if CODE_LINE.match(line.rstrip()):
                yield from _code_sentences(line, offset + start)
            elif line.strip():
                yield Sentence(
                    offset + start, offset + start + len(line.rstrip()), " ".join(CALCULATOR.sub("", line).split())
                )
            start += len(line)


def sentences(rationale: str) -> list[Sentence]:
    """Every sentence of ``rationale`` a reader sees as language, in order (code contributes comments)."""
    found: list[Sentence] = []
    position = 0
    for fence in FENCE.finditer(rationale):
        found.extend(_prose_sentences(rationale[position : fence.start()], position))
        found.extend(_code_sentences(fence.group(1), fence.start(1)))
        position = fence.end()
    found.extend(_prose_sentences(rationale[position:], position))
    return found


def pieces(text: str) -> list[str]:
    """``text`` cut where a phrase can be slipped in: clause and run-on boundaries (``segment.units``
    down to a capitalised word after a lower-case one), parentheses, dashes, commas and colons."""
    # Only after a space: a boundary glued to the word before splits a brand ("CleverCalc").
    cuts = {0, len(text)} | {
        u.start for u in units(text) if u.strength >= NAME_BOUNDARY and text[u.start - 1 : u.start].isspace()
    }
    for match in CUT.finditer(text):
        cuts |= {match.start(), match.end()}
    bounds = sorted(cuts)
    return [text[a:b].strip(" ,;:()[]-–—") for a, b in pairwise(bounds)]


def prose(rationale: str, min_words: int, keep: Callable[[str], bool] | None = None) -> list[Sentence]:
    """The sentences of ``rationale`` worth judging (prose of at least ``min_words`` words, or any that
    ``keep`` picks), each long one followed by its pieces of that kind: a phrase slipped
    mid-sentence is judged on its own."""
    found: list[Sentence] = []
    for sentence in sentences(rationale):
        text, long = sentence.text, len(words(sentence.text)) >= PIECES_FROM
        if not (long or is_prose(text, min_words) or (keep is not None and keep(text))):
            continue
        parent = len(found)
        found.append(sentence)
        if long:
            found.extend(
                Sentence(sentence.start, sentence.end, piece, parent)
                for piece in pieces(text)
                if piece != text and is_prose(piece, min_words)
            )
    return found


def prompt_sentences(prompt: str, min_words: int) -> list[str]:
    """The prompt's prose sentences (a code task's docstring), or the whole prompt when it has none."""
    found = [s.text for s in prose(prompt, min_words)]
    return found or ([" ".join(prompt.split())] if prompt.strip() else [])


def relatedness(found: list[Sentence], vectors: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence of ``found`` (rows of ``vectors``): the best cosine to a prompt sentence, and to
    another whole sentence of the trace (a piece is never compared with the sentence it comes from);
    -1 where there is none."""
    n = len(found)
    to_prompt = (vectors @ prompt.T).max(axis=1) if len(prompt) else np.full(n, -1.0)
    whole = np.flatnonzero([s.parent < 0 for s in found])
    own = np.array([i if s.parent < 0 else s.parent for i, s in enumerate(found)])
    if not len(whole):
        return to_prompt, np.full(n, -1.0)
    cosines = vectors @ vectors[whole].T
    cosines[own[:, None] == whole[None, :]] = -1.0  # a sentence does not vouch for itself
    return to_prompt, cosines.max(axis=1)


def grounded(phrase: str, prompt_lower: str) -> bool:
    """True when the prompt itself says ``phrase`` (case-insensitive), or each of its longer words in some
    form ("vote for" in a prompt that says "voted for"): then it is no cue against the trace."""
    phrase = phrase.strip().lower()
    if phrase in prompt_lower:
        return True
    stems = [w[:4] for w in words(phrase) if len(w) >= 4]
    return bool(stems) and all(re.search(rf"(?<![a-z]){re.escape(stem)}", prompt_lower) for stem in stems)


def grounded_word(word: str, prompt_lower: str) -> bool:
    """True when the prompt says ``word`` (lower case) as a whole word."""
    return re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", prompt_lower) is not None


def new_names(sentence: str, prompt_lower: str) -> list[str]:
    """Capitalised words inside ``sentence`` (not opening it or a clause) that the prompt never says."""
    found = []
    for match in NAME.finditer(sentence):
        name, before = match.group(1), sentence[: match.start()].rstrip()
        if not before or before[-1] in CLAUSE_OPENERS or len(name) < 2 or name in COMMON_NAMES:
            continue
        if name.isupper() and not any(c.isdigit() for c in name):
            continue  # an acronym (MPH) or a variable (AB)
        if not any(grounded_word(form, prompt_lower) for form in (name.lower(), name.lower().rstrip("s"))):
            found.append(name)
    return found


def read_lines(path: str | Path, what: str) -> list[str]:
    """The non-empty, non-comment lines of a user file; a missing file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise TracebankError(f"{what}: no such file {path}; give a text file with one example per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def packaged_lines(name: str) -> list[str]:
    """The lines of a file shipped in ``filters/safety/data`` (``#`` lines are comments)."""
    text = resources.files("tracebank.filters.safety").joinpath("data", name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class Batch:
    """The sentences of many traces, their prompts' sentences and exemplars, embedded in one call
    (each distinct text once): the per-trace similarities the scorers judge by."""

    def __init__(
        self, found: list[list[Sentence]], prompts: list[list[str]], exemplars: list[str], model: str, progress: str
    ):
        self.found, self.prompts = found, prompts
        texts = [s.text for sentences in found for s in sentences]
        wanted = texts + [p for sentences in prompts for p in sentences] + exemplars if texts else []
        distinct = list(dict.fromkeys(wanted))
        self.row = {text: i for i, text in enumerate(distinct)}
        self.matrix = get_embedder(model).encode(distinct, progress=progress) if distinct else np.zeros((0, 0))
        self.exemplars = self.matrix[[self.row[e] for e in exemplars]] if texts else self.matrix

    def vectors(self, texts: list[str]) -> np.ndarray:
        return self.matrix[[self.row[t] for t in texts]]

    def exemplar_similarity(self, i: int) -> np.ndarray:
        """Per sentence of trace ``i``: the cosine to its nearest exemplar."""
        return (self.vectors([s.text for s in self.found[i]]) @ self.exemplars.T).max(axis=1)

    def relatedness(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`relatedness` of trace ``i``'s sentences."""
        vectors = self.vectors([s.text for s in self.found[i]])
        prompt = self.vectors(self.prompts[i]) if self.prompts[i] else np.zeros((0, vectors.shape[1]))
        return relatedness(self.found[i], vectors, prompt)


class SentenceJudge(Protocol):
    """What ``promotion`` and ``drift`` share: options with ``min_words`` and ``model``, exemplars, and a
    ``judge`` of trace ``i``: (first hit or None, its metric or None, cues counted)."""

    name: str
    reads: tuple[str, ...]
    options: Any
    exemplars: list[str]

    def judge(self, i: int, batch: Batch, prompt_lower: str) -> tuple[Sentence | None, float | None, int]: ...


def exemplars(packaged: str, extra: str | Path | None, what: str) -> list[str]:
    """The shipped exemplar lines of ``packaged``, plus the lines of the user's file ``extra``."""
    lines = packaged_lines(packaged)
    return lines + read_lines(extra, what) if extra is not None else lines


def score(judge: SentenceJudge, table: pa.Table, keep: Callable[[str], bool], metrics: tuple[str, str]) -> pa.Table:
    """The safety rows of ``judge`` over ``table``: its prose sentences (``keep`` also judges a short
    sentence with a strong cue) embedded in one batch, each trace judged, ``metrics`` named
    (the judge's value, the cues it counted)."""
    rows = table.select(list(judge.reads)).to_pylist()
    minimum = judge.options.min_words
    found = [prose(row["rationale"] or "", minimum, keep) for row in rows]
    prompts = [prompt_sentences(prompt_text(row["messages"]), minimum) for row in rows]
    batch = Batch(found, prompts, judge.exemplars, judge.options.model, judge.name)
    flagged, evidence, spans, values, counts = [], [], [], [], []
    for i, row in enumerate(rows):
        hit, value, total = (None, None, None)
        if row["rationale"] is not None:
            hit, value, total = judge.judge(i, batch, prompt_text(row["messages"]).lower())
        flagged.append(None if row["rationale"] is None else int(hit is not None))
        evidence.append(hit.text if hit else None)
        spans.append((hit.start, hit.end) if hit else None)
        values.append(None if value is None else round(value, 4))
        counts.append(total)
    columns = {metrics[0]: pa.array(values, pa.float64()), metrics[1]: pa.array(counts, pa.int64())}
    return safety_result(table.column("trace_id").to_pylist(), judge.name, flagged, evidence, spans, columns)
