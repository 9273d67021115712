"""Planted-duplicate corpora for ``bench/dedup_throughput.py``, built from real GSM8K reference solutions.

The base texts are the GSM8K train reference solutions, read at run time
(``tracebank.sources.resolve("gsm8k/train")``) with their calculator annotations (``<<48/2=24>>``)
dropped, so they read like a teacher's trace. Family ``f`` is one prompt built on base row
``order[f % 7473]``; from the second pass over the rows on, every number in the question and the
solution is remapped (one mapping for both), so a cycled copy is a new question.

A family holds its base trace, 0-3 planted variants and 0-2 planted negatives, all under its
question. Every planted pair is (base, other) and has a kind:

    exact           the same bytes                     format    case, whitespace, 1,000 / 2.50 / 3.0
    typo            1-3 character edits in words       reorder   two adjacent steps (or sentences) swapped
    numbers         1-2 numbers changed                insert    one sentence inserted
    delete          one step deleted                   combo     2-3 of typo, reorder, numbers, insert,
                                                                 delete, format
    other_solution  the same maths written another way (the annotations as terse equations)
    renumbered      the same template with two thirds of its distinct numbers changed
    paraphrase      (semantic corpus only) the same steps reworded: synonyms, operators as words

The kind says how a text was made, not what it is. The label of a pair is its exact Jaccard
similarity (sets of word 3-grams of ``filters.diversity.text.words`` tokens, the scorer's own tokenisation,
compared exactly in ``bench/dedup/eval.py``) against the scorer's threshold: a typo in a 20-word
solution can fall below 0.8, and renumbering a long solution can stay above it. The strengths
above were fixed beforehand as "what a near copy looks like", not tuned to any scorer.
"""

from __future__ import annotations

import random
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa

from tracebank import sources

KINDS = ("exact", "format", "typo", "reorder", "numbers", "insert", "delete", "combo",
         "other_solution", "renumbered", "paraphrase")  # fmt: skip
NEAR_WEIGHTS = {"exact": 4, "format": 12, "typo": 15, "reorder": 10, "numbers": 15, "insert": 12, "delete": 10,
                "combo": 22}  # fmt: skip
COMBO_PARTS = ("typo", "reorder", "numbers", "insert", "delete", "format")
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
WORD4 = re.compile(r"[A-Za-z]{4,}")
ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
CHUNK = 50_000  # rows per Arrow batch while generating: the Python lists never hold more


@dataclass(frozen=True)
class Base:
    question: str
    solution: str  # annotations dropped, steps one per line, "#### answer" last
    equations: tuple[tuple[str, str], ...]  # (expression, result) from the annotations
    answer: str


def load_bases() -> list[Base]:
    """The GSM8K train rows as base texts (read at run time: the repo never copies dataset text)."""
    bases = []
    for line in sources.resolve("gsm8k/train").read_bytes().splitlines():
        row = orjson.loads(line)
        answer = row["answer"]
        equations = tuple((e.strip(), r.strip()) for e, r in ANNOTATION.findall(answer))
        bases.append(Base(row["question"], ANNOTATION.sub("", answer), equations, answer.rsplit("####", 1)[-1].strip()))
    return bases


# ---------------------------------------------------------------- numbers


def _is_standalone(text: str, match: re.Match[str]) -> bool:
    """A number not glued to letters or other digits (so "5th" and "x2" are left alone)."""
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return not (before.isalnum() or before == "." or after.isalnum())


def _new_number(old: str, rng: random.Random) -> str:
    value = float(old.replace(",", ""))
    decimals = len(old.split(".")[1]) if "." in old else 0
    scale = 10**decimals
    units = round(value * scale)
    low, high = max(1, units // 2), units * 2 + 3
    new = units
    while new == units:
        new = rng.randint(low, high)
    text = f"{new / scale:.{decimals}f}" if decimals else str(new)
    return f"{int(text):,}" if "," in old and not decimals else text


def remap_numbers(texts: list[str], rng: random.Random, fraction: float = 1.0) -> list[str] | None:
    """``texts`` with ``fraction`` of their distinct numbers replaced, one mapping shared by all texts."""
    values = sorted({m.group() for text in texts for m in NUMBER.finditer(text)})
    if not values:
        return None
    chosen = rng.sample(values, max(1, round(fraction * len(values))))
    mapping = {value: _new_number(value, rng) for value in chosen}
    return [NUMBER.sub(lambda m: mapping.get(m.group(), m.group()), text) for text in texts]


def change_numbers(text: str, rng: random.Random, count: int) -> str | None:
    """``count`` single occurrences changed (an arithmetic slip, not a consistent renumbering)."""
    matches = list(NUMBER.finditer(text))
    if len(matches) < count:
        return None
    for match in sorted(rng.sample(matches, count), key=lambda m: -m.start()):
        text = text[: match.start()] + _new_number(match.group(), rng) + text[match.end() :]
    return text


# ---------------------------------------------------------------- edits


def _steps(text: str) -> tuple[list[str], list[str]]:
    """The non-blank lines of ``text`` as (steps, ["#### answer"] or [])."""
    lines = [line for line in text.split("\n") if line.strip()]
    if lines and lines[-1].lstrip().startswith("####"):
        return lines[:-1], lines[-1:]
    return lines, []


def typo(text: str, rng: random.Random, count: int) -> str | None:
    matches = list(WORD4.finditer(text))
    if len(matches) < count:
        return None
    for match in sorted(rng.sample(matches, count), key=lambda m: -m.start()):
        word, i = match.group(), rng.randrange(1, len(match.group()) - 2)
        edit = rng.choice(("swap", "drop", "double"))
        if edit == "swap" and word[i] != word[i + 1]:
            new = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif edit == "drop":
            new = word[:i] + word[i + 1 :]
        else:
            new = word[: i + 1] + word[i:]
        text = text[: match.start()] + new + text[match.end() :]
    return text


def reorder(text: str, rng: random.Random) -> str | None:
    steps, tail = _steps(text)
    if len(steps) >= 2:
        i = rng.randrange(len(steps) - 1)
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
        return "\n".join(steps + tail)
    sentences = re.split(r"(?<=\.) ", steps[0]) if steps else []
    if len(sentences) < 2:
        return None
    i = rng.randrange(len(sentences) - 1)
    sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
    return "\n".join([" ".join(sentences), *tail])


FILLERS = (
    "Let me double-check that: {a} + {b} = {c}.",
    "We should read the question again to be sure about the {noun}.",
    "Next, we work out how many {noun} there are in total.",
    "That is the number of {noun} we need for the next step.",
    "Note that each {noun} is counted only once here.",
    "So far we know about {a} {noun}.",
    "This part of the problem is only about the {noun}, nothing else.",
    "It helps to write down what we know before we go on.",
    "Keep in mind that the {noun} and the {other} are different things.",
)


def filler(text: str, rng: random.Random) -> str:
    """A sentence a teacher might add, made from this text's own words and numbers."""
    nouns = [w.lower() for w in WORD4.findall(text)] or ["items"]
    numbers = [int(n) for n in re.findall(r"\b\d{1,4}\b", text)] or [2, 3]
    a, b = rng.choice(numbers), rng.choice(numbers)
    return rng.choice(FILLERS).format(a=a, b=b, c=a + b, noun=rng.choice(nouns), other=rng.choice(nouns))


def insert(text: str, rng: random.Random) -> str:
    steps, tail = _steps(text)
    steps.insert(rng.randint(0, len(steps)), filler(text, rng))
    return "\n".join(steps + tail)


def delete(text: str, rng: random.Random) -> str | None:
    steps, tail = _steps(text)
    if len(steps) < 2:
        return None
    del steps[rng.randrange(len(steps))]
    return "\n".join(steps + tail)


def _number_format(text: str, rng: random.Random) -> str | None:
    """1000 -> 1,000, 3 -> 3.0, 2.5 -> 2.50: the same number to ``filters.diversity.text.normalized``."""
    matches = [m for m in NUMBER.finditer(text) if _is_standalone(text, m) and "," not in m.group()]
    if not matches:
        return None
    match = rng.choice(matches)
    old = match.group()
    if "." in old:
        new = old + "0"
    elif int(old) >= 1000:
        new = f"{int(old):,}"
    else:
        new = old + rng.choice((".0", ".00"))
    return text[: match.start()] + new + text[match.end() :]


FORMATS = {
    "lower": lambda text, rng: text.lower(),
    "upper_first": lambda text, rng: "\n".join(line[:1].upper() + line[1:] for line in text.split("\n")),
    "one_line": lambda text, rng: text.replace("\n", rng.choice((" ", "  ", " \n "))),
    "double_space": lambda text, rng: text.replace(". ", ".  ").replace(", ", ",   "),
    "nbsp": lambda text, rng: text.replace(" ", "\u00a0", rng.randint(1, 3)),
    "trailing": lambda text, rng: text.replace("\n", " \t\n") + "\n",
    "number_format": _number_format,
}


def reformat(text: str, rng: random.Random) -> str:
    """The same text to ``filters.diversity.text.normalized``: case, whitespace and number format changed."""
    out = text
    for name in rng.sample(sorted(FORMATS), rng.randint(1, 3)):
        out = FORMATS[name](out, rng) or out
    return out if out != text else text + " "


def near_copy(kind: str, text: str, rng: random.Random) -> str | None:
    """A planted variant of ``text`` of ``kind`` (None when the text cannot take it, e.g. one step)."""
    if kind == "exact":
        return text
    if kind == "format":
        return reformat(text, rng)
    if kind == "typo":
        return typo(text, rng, rng.choice((1, 1, 1, 2, 2, 3)))
    if kind == "numbers":
        return change_numbers(text, rng, rng.choice((1, 1, 2)))
    if kind == "reorder":
        return reorder(text, rng)
    if kind == "insert":
        return insert(text, rng)
    if kind == "delete":
        return delete(text, rng)
    applied, out = 0, text
    for part in rng.sample(COMBO_PARTS, rng.randint(2, 3)):
        changed = near_copy(part, out, rng) if part not in ("typo", "numbers") else _one(part, out, rng)
        if changed is not None:
            out, applied = changed, applied + 1
    return out if applied >= 2 and re.search(r"\w", out) else None


def _one(kind: str, text: str, rng: random.Random) -> str | None:
    return typo(text, rng, 1) if kind == "typo" else change_numbers(text, rng, 1)


CONNECTIVES = ("First,", "Then", "Next,", "So", "Now", "After that,", "This gives", "We get", "Finally,")


def other_solution(equations: list[tuple[str, str]], answer: str, rng: random.Random) -> str | None:
    """The same maths written another way: terse equations, one per line (no base wording)."""
    if not equations:
        return None
    times = rng.choice((" x ", " * ", " × "))
    lines = []
    for k, (expression, result) in enumerate(equations):
        spaced = re.sub(r"\s*([+\-/])\s*", r" \1 ", expression).replace("*", times)
        lead = CONNECTIVES[0] if k == 0 else rng.choice(CONNECTIVES[1:])
        lines.append(f"{lead} {spaced} = {result}.")
    lines.append(rng.choice((f"#### {answer}", f"The answer is {answer}.", f"Answer: {answer}")))
    return "\n".join(lines)


SYNONYMS = {
    "total": "sum", "altogether": "in all", "so": "therefore", "then": "after that", "has": "owns",
    "have": "own", "buys": "purchases", "bought": "purchased", "needs": "requires", "need": "require",
    "each": "every", "makes": "earns", "spent": "paid", "left": "remaining", "gets": "receives",
    "got": "received", "cost": "price", "costs": "is priced at", "per": "for every", "more": "additional",
    "earned": "made", "uses": "consumes", "used": "consumed", "there": "in that case there",
    "half": "one half", "twice": "two times", "number": "count", "sold": "got rid of", "will": "is going to",
    "which": "and that", "means": "tells us", "all": "every one of", "she": "the woman", "he": "the man",
    "they": "the group", "is": "comes to", "are": "come to", "was": "came to",
}  # fmt: skip
OPERATORS = {"+": " plus ", "-": " minus ", "*": " times ", "x": " times ", "×": " times ", "/": " divided by ",
             "=": " equals "}  # fmt: skip
OPERATOR = re.compile(r"\s*([+*/=×])\s*|(?<=[\d ])([-x])(?= ?[$\d])")
PREFIXES = ("", "", "In other words, ", "This means ", "Put differently, ", "We find that ")


STARTERS = {"the", "she", "he", "they", "there", "half", "each", "if", "since", "in", "this", "that", "it", "we",
            "after", "a", "an", "her", "his", "their", "one", "two", "all"}  # fmt: skip
CONNECTED = ("So", "Therefore", "Then", "After", "Thus", "Hence")  # steps that already open with a connective


def paraphrase(text: str, rng: random.Random) -> str:
    """The same steps reworded: synonyms, operators spelled out, some steps reintroduced."""
    out = []
    steps, tail = _steps(text)
    for step in steps:
        step = OPERATOR.sub(lambda m: OPERATORS[m.group(1) or m.group(2)], step)
        step = re.sub(r"\b[A-Za-z]+\b", lambda m: _synonym(m.group(), rng), step).replace("  ", " ")
        prefix = "" if step.startswith(CONNECTED) else rng.choice(PREFIXES)
        if prefix and step.split(" ", 1)[0].lower() in STARTERS:
            step = step[:1].lower() + step[1:]
        out.append(prefix + step)
    answer = tail[0].removeprefix("####").strip() if tail else ""
    return "\n".join(out + ([f"So the final answer comes to {answer}."] if tail else []))


def _synonym(word: str, rng: random.Random) -> str:
    new = SYNONYMS.get(word.lower())
    if new is None or rng.random() < 0.15:
        return word
    return new.capitalize() if word[:1].isupper() else new


# ---------------------------------------------------------------- families and the table


@dataclass
class Planted:
    """Planted pairs (row positions into the corpus) and their kinds (indexes into KINDS)."""

    left: array = field(default_factory=lambda: array("q"))
    right: array = field(default_factory=lambda: array("q"))
    kind: array = field(default_factory=lambda: array("b"))

    def add(self, left: int, right: int, kind: str) -> None:
        self.left.append(left)
        self.right.append(right)
        self.kind.append(KINDS.index(kind))

    def __len__(self) -> int:
        return len(self.left)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.frombuffer(getattr(self, name), dtype=getattr(self, name).typecode).astype(np.int64)
                for name in ("left", "right", "kind")}  # fmt: skip


def families(bases: list[Base], seed: int, semantic: bool = False) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Per family: the question and its traces as (kind, text); the first trace is the base ("base")."""
    order = list(range(len(bases)))
    random.Random(seed).shuffle(order)
    family = 0
    while True:
        rng = random.Random(seed * 1_000_003 + family)
        base = bases[order[family % len(bases)]]
        question, solution, answer = base.question, base.solution, base.answer
        equations = list(base.equations)
        if family >= len(bases):  # a cycled copy: new numbers in the question, solution and equations
            flat = [question, solution, answer] + [x for pair in equations for x in pair]
            flat = remap_numbers(flat, rng) or flat
            question, solution, answer = flat[:3]
            equations = list(zip(flat[3::2], flat[4::2], strict=True))
        traces = [("base", solution)]
        if semantic:
            traces.append(("paraphrase", paraphrase(solution, rng)))
            extra = [("renumbered", (remap_numbers([solution], rng, 2 / 3) or [None])[0])]
            extra.append(("other_solution", other_solution(equations, answer, rng)))
            traces += [(kind, text) for kind, text in extra if text is not None and rng.random() < 0.5]
        else:
            for _ in range(rng.choices((0, 1, 2, 3), (35, 35, 20, 10))[0]):
                kind = rng.choices(list(NEAR_WEIGHTS), list(NEAR_WEIGHTS.values()))[0]
                text = near_copy(kind, solution, rng)
                if text is not None:
                    traces.append((kind, text))
            if rng.random() < 0.5 and (text := other_solution(equations, answer, rng)) is not None:
                traces.append(("other_solution", text))
            if rng.random() < 0.25 and (texts := remap_numbers([solution], rng, 2 / 3)) is not None:
                traces.append(("renumbered", texts[0]))
        yield question, traces
        family += 1


@dataclass
class Corpus:
    table: pa.Table  # trace_id, prompt_id, messages, rationale, correct; row i is trace f"t{i:08d}"
    planted: Planted


def build(n: int, seed: int = 0, semantic: bool = False, bases: list[Base] | None = None) -> Corpus:
    """``n`` traces in families, written CHUNK rows at a time into Arrow (lean at a million rows)."""
    bases = bases or load_bases()
    planted, batches = Planted(), []
    columns: dict[str, list] = {"prompt_id": [], "question": [], "rationale": [], "correct": []}
    rng = random.Random(seed)
    row = 0
    for family, (question, traces) in enumerate(families(bases, seed, semantic)):
        if row >= n:
            break
        first = row  # the base trace's row: every planted pair is (base, other)
        for kind, text in traces[: n - row]:
            if kind != "base":
                planted.add(first, row, kind)
            columns["prompt_id"].append(f"q{family:08d}")
            columns["question"].append(question)
            columns["rationale"].append(text)
            columns["correct"].append(rng.choices((1, 0, None), (60, 30, 10))[0])
            row += 1
        if len(columns["rationale"]) >= CHUNK:
            batches.append(_batch(columns, row))
    if columns["rationale"]:
        batches.append(_batch(columns, row))
    return Corpus(pa.Table.from_batches(batches), planted)


def _batch(columns: dict[str, list], end: int) -> pa.RecordBatch:
    """The columns collected so far as one Arrow batch (rows end - len .. end), then emptied."""
    count = len(columns["rationale"])
    contents = pa.array(columns["question"], pa.string())
    messages = pa.ListArray.from_arrays(
        pa.array(range(count + 1), pa.int32()),
        pa.StructArray.from_arrays([pa.array(["user"] * count, pa.string()), contents], fields=list(MESSAGE)),
    )
    batch = pa.RecordBatch.from_pydict({
        "trace_id": pa.array([f"t{i:08d}" for i in range(end - count, end)], pa.string()),
        "prompt_id": pa.array(columns["prompt_id"], pa.string()),
        "messages": messages,
        "rationale": pa.array(columns["rationale"], pa.string()),
        "correct": pa.array(columns["correct"], pa.int8()),
    })  # fmt: skip
    for values in columns.values():
        values.clear()
    return batch
