"""Arithmetic steps in a rationale, each checked with the safe parser of ``filters.chunking.arith``.

Two kinds of step are found:

- GSM8K calculator annotations ``<<48/2=24>>``: the expression must equal the result, and the
  number written right after the annotation must be that result.
- Inline equations in prose, plain or LaTeX: ``48/2 = 24``, ``0.2 x 50 = $10``, ``$12 - $5 = $7``,
  ``3 \\times 4 = 12``, ``20% of 50 = 10``, ``15/60 = 25%``, chains (``3*4 = 12*2 = 24``: each ``=``
  is a step; ``12*2`` continuing from ``12`` is read as "12, times 2"). An inline equation that an
  annotation sits in (``16 - 3 = <<16-3=13>>13``) is one step with it.

A step is judged only when it is unambiguous: both sides are whole expressions made of numbers and
operators, delimited by words or punctuation (``1 1/2*4 = 6``, ``5 apples * 3 = 15`` and ``1:30 + 2``
are not judged), and the left side computes something. ``≈`` compares within 1%. Steps with
variables (``2x = 10``) or units inside (``2 million * 3``) are not judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from tracebank.filters.chunking.arith import MathView, Token, agrees, evaluate, evaluate_tokens, math_view, tokenize

ANNOTATION = re.compile(r"<<([^<>]*)>>")
# Equals signs of equations: not ==, <=, >=, !=, => or =<.
EQUALS = re.compile(r"(?<![=<>!])(?:=|≈)(?![=<>])")
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+"
# A run of numbers, operators and equals signs: punctuation outside a number ("12, 3", "May.") ends it.
RUN = re.compile(rf"(?:{NUMBER}|[-+*/^()=≈$%]|[ \t])+")
AFTER_ANNOTATION = re.compile(rf"[ \t]?\$?[ \t]?({NUMBER})(?![\d.]*\d)")
OPERATOR_WORD = re.compile(r"(?:^|\s)(?:[xX×]|times|plus|minus)$|\d\s+and$")  # "1 and 1/4": a mixed number
VARIABLE = re.compile(r"[A-Za-z]+[ \t]*[-+*/^=]")  # "= 5A/5", "= 1.2Y / 1.2": algebra, not arithmetic
CENTS = re.compile(r"[ \t]*(?:cents?\b|¢)")
SCALE_WORD = re.compile(r"\s*(?:million|billion|trillion|thousand|hundred|dozen|k\b|m\b|bn\b)", re.IGNORECASE)
BINARY = {"+", "-", "*", "/", "^", "**"}


@dataclass(frozen=True)
class Step:
    start: int  # span in the original text
    end: int
    anchor: int  # the offset that places the step in a chunk: its equals sign (or annotation)
    text: str  # the step as written
    value: float  # what the left side computes
    written: str  # what the text says it is
    ok: bool
    source: str  # inline | annotation | both


def _binary(tokens: list[Token]) -> bool:
    """Whether the tokens compute something (a binary operator, not just a sign)."""
    return any(
        t.text in BINARY and i > 0 and (tokens[i - 1].kind == "num" or tokens[i - 1].text == ")")
        for i, t in enumerate(tokens)
    )


def _divides(tokens: list[Token]) -> bool:
    return any(t.text in ("/", "^", "**") or t.text.endswith("%") for t in tokens)


def _left(tokens: list[Token]) -> list[Token] | None:
    """The whole left side as an expression (an unmatched opening parenthesis dropped), or None."""
    while tokens and tokens[0].text == "(" and evaluate_tokens(tokens) is None:
        tokens = tokens[1:]
    return tokens if evaluate_tokens(tokens) is not None else None


def _right(tokens: list[Token]) -> list[Token] | None:
    """The longest leading expression of a right side, if what follows it cannot be part of it."""
    for end in range(len(tokens), 0, -1):
        if evaluate_tokens(tokens[:end]) is not None:
            rest = tokens[end:]
            if not rest or rest[0].text == ")" or (rest[0].kind == "other" and not rest[0].text[0].isdigit()):
                return tokens[:end]
            return None  # "= 30 + M", "= 3 1/2", "= 18 000": goes on with something it is not
    return None


def _matches(value, tokens: list[Token], rounding: bool, approx: bool) -> bool:
    tolerance = 0.01 if approx else 1e-6
    if len(tokens) == 1:
        return agrees(value, tokens[0].text, rounding, tolerance)
    if len(tokens) == 2 and tokens[0].text in ("-", "+") and tokens[1].kind == "num":  # "= -9.38"
        return agrees(-value if tokens[0].text == "-" else value, tokens[1].text, rounding, tolerance)
    target = evaluate_tokens(tokens)
    if target is None:
        return False
    if abs(float(value) - float(target)) <= tolerance * max(1.0, abs(float(target))):
        return True
    # "3*4 = 12*2 = 24": the side starts with the result and goes on computing from it.
    return tokens[0].kind == "num" and agrees(value, tokens[0].text, rounding, tolerance)


def _judge(left: list[Token], right: list[Token], approx: bool, cents: bool) -> bool:
    """Whether ``right`` states the value of ``left``, reading a percentage either way ("= 50 cents": x100 too)."""
    rounding = _divides(left)
    for value in (evaluate_tokens(left), evaluate_tokens(left, percent=False)):
        if value is None:
            continue
        if _matches(value, right, rounding, approx) or (cents and _matches(value * 100, right, rounding, approx)):
            return True
    return False


def _ambiguous_percent(tokens: list[Token]) -> bool:
    """ "15 + 20% = 18" may mean 15 plus 20% of 15: a percentage added or subtracted is not judged."""
    return any(t.text.endswith("%") for t in tokens) and any(t.text in ("+", "-") for t in tokens[1:])


def _glued(text: str, start: int, end: int) -> bool:
    """A run stuck to a letter or to a time, ratio or list ("x3", "1:30", "3,4"), or one that starts
    with an operator whose left operand is a word ("x + 3 = 5"), is not an equation."""
    before, previous = text[start - 1] if start > 0 else " ", text[:start].rstrip()
    if text[start] in "+*/^" or (text[start] == "-" and (previous[-1:].isalnum() or previous[-1:] == ")")):
        return True
    if before.isalpha() or before.isdigit() or (before in ":/.,-" and start > 1 and text[start - 2].isdigit()):
        return True
    if (previous[-2:-1].isdigit() and previous[-1:] == ",") or OPERATOR_WORD.search(previous):
        return True  # "14, 400 / 80": a digit group; "60 students x 2/3": the left operand is words
    after = text[end : end + 2]
    return (len(after) == 2 and after[0] in ":/.,-" and after[1].isdigit()) or VARIABLE.match(text, end) is not None


def _chain(view: MathView, start: int, end: int, source: str, fractions: bool = False) -> list[Step]:
    """The checked steps of one run of numbers, operators and equals signs in the view."""
    text = view.text[start:end]
    cuts = [m.span() for m in EQUALS.finditer(text)]
    if not cuts or _glued(view.text, start, end):
        return []
    offsets = [0] + [e for _, e in cuts]
    sides = [text[a:b] for a, b in zip(offsets, [s for s, _ in cuts] + [len(text)], strict=True)]
    steps: list[Step] = []
    previous = _left(tokenize(sides[0], fractions))
    for k, side in enumerate(sides[1:], start=1):
        whole = tokenize(side, fractions)
        tokens = _right(whole)
        tail = start + offsets[k] + (tokens[-1].end if tokens else 0)
        if tokens is not None and k == len(sides) - 1 and SCALE_WORD.match(view.text, tail):
            tokens = None  # "= 1.5 million": not judged
        judged = previous is not None and tokens is not None and _binary(previous)  # "12 = 3*4": not judged
        if judged and not _ambiguous_percent(previous):
            approx, cents = text[cuts[k - 1][0]] == "≈", CENTS.match(view.text, tail) is not None
            ok = _judge(previous, tokens, approx, cents)
            value = evaluate_tokens(previous)
            steps.append(_step(view, start + offsets[k - 1], start + offsets[k], previous, tokens, value, ok, source))
        previous = tokens if tokens is not None and len(tokens) == len(whole) else None
    return steps


def _step(view: MathView, left_at: int, right_at: int, left, right, value, ok: bool, source: str) -> Step:
    first, last = left_at + left[0].start, right_at + right[-1].end
    start, end = view.origin[first], view.origin[last - 1] + 1
    anchor = view.origin[right_at - 1]
    return Step(start, end, anchor, "", float(value), right[-1].text if len(right) == 1 else "", ok, source)


def inline_steps(text: str) -> list[Step]:
    """Checked equations written in the prose (calculator annotations left out)."""
    view = math_view(text, drop=ANNOTATION)
    steps = []
    for run in RUN.finditer(view.text):
        found = run.group()
        if EQUALS.search(found) and any(c.isdigit() for c in found):
            start, end = run.start() + len(found) - len(found.lstrip()), run.start() + len(found.rstrip())
            steps.extend(_either_reading(view, start, end, "inline"))
    return [_with_text(text, s) for s in steps]


def _either_reading(view: MathView, start: int, end: int, source: str) -> list[Step]:
    """Steps of a run, each right if it is right in the plain or the fraction reading ("25 / 1/3 = 75")."""
    steps = _chain(view, start, end, source)
    if all(s.ok for s in steps) or "/" not in view.text[start:end]:
        return steps
    right = {s.anchor for s in _chain(view, start, end, source, fractions=True) if s.ok}
    return [s if s.ok or s.anchor not in right else replace(s, ok=True) for s in steps]


def annotation_steps(text: str) -> list[Step]:
    """Checked calculator annotations: the expression's value against its result and the number after it."""
    steps = []
    for match in ANNOTATION.finditer(text):
        view = math_view(match.group(1))
        found = _either_reading(view, 0, len(view.text), "annotation") if EQUALS.search(view.text) else []
        if not found:
            continue
        ok, end, written = all(s.ok for s in found), match.end(), EQUALS.split(view.text)[-1].strip()
        shown = AFTER_ANNOTATION.match(text, match.end())
        if shown:  # the number the text goes on with must be the annotation's result
            end, written = shown.end(), shown.group(1)
            final = evaluate(EQUALS.split(view.text)[-1])
            ok = ok and (final is None or agrees(final, written, True))
        steps.append(
            Step(
                match.start(), end, match.start(), text[match.start() : end], found[0].value, written, ok, "annotation"
            )
        )
    return steps


def _with_text(text: str, step: Step) -> Step:
    written = step.written or text[step.start : step.end].split("=")[-1].strip()
    return Step(
        step.start, step.end, step.anchor, text[step.start : step.end], step.value, written, step.ok, step.source
    )


def find_steps(text: str) -> list[Step]:
    """Every checked arithmetic step of ``text`` in order; an annotation inside an inline step joins it."""
    annotations = annotation_steps(text)
    steps = []
    for step in inline_steps(text):
        inside = [a for a in annotations if step.anchor <= a.start < step.end]
        for annotation in inside:
            annotations.remove(annotation)
        ok = step.ok and all(a.ok for a in inside)
        source = "both" if inside else "inline"
        end = max([step.end, *(a.end for a in inside)])
        steps.append(Step(step.start, end, step.anchor, text[step.start : end], step.value, step.written, ok, source))
    return sorted(steps + annotations, key=lambda s: (s.anchor, s.start))
