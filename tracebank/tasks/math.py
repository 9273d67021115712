"""Math word problems with numeric answers (GSM8K and alike): render, extract, verify.

``extract_answer`` tries the rules below in order; the first that finds a number wins. Each
rule is named beside its pattern, and tests/tasks/test_math.py has a case for each.
"""

from __future__ import annotations

import re
from fractions import Fraction

from tracebank.tasks.base import Messages

INSTRUCTION = (
    "Solve the problem step by step. "
    "End with a final line of the form '#### <number>' that gives only the final numeric answer."
)

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?(?:\s?/\s?\d+)?"
RULES: list[tuple[str, re.Pattern[str]]] = [
    # GSM8K's own reference format: "#### 72".
    ("hashes", re.compile(rf"####\s*({_NUMBER})")),
    # LaTeX convention (MATH, most R1-style models): "\boxed{72}".
    ("boxed", re.compile(rf"\\boxed\{{\s*\\?({_NUMBER})")),
    # Prose: "The answer is 72", "Final answer: $72", "answer = 72".
    ("answer_is", re.compile(rf"answer\s*(?:is|:|=)?\s*:?\s*\**\s*({_NUMBER})", re.IGNORECASE)),
    # The labeled GSM8K model solutions end with "A: 72".
    ("a_colon", re.compile(rf"(?m)^\s*A:\s*({_NUMBER})")),
    # Fallback (lm-eval's flexible extract): the last number anywhere in the text.
    ("last_number", re.compile(rf"({_NUMBER})")),
]


def normalize_number(text: str) -> str | None:
    """Canonical form of a numeric string: "$1,000.00" -> "1000", "3/4" -> "0.75", "50%" -> "50".

    Commas, currency signs, spaces and a trailing percent sign are dropped; integral values lose
    their decimals; fractions become decimals. Returns None for text that is not a number.
    """
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip("%").rstrip(".")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return format(float(value), ".10g")


def extract_answer(text: str | None) -> tuple[str | None, str | None]:
    """(normalized answer, rule name) from a completion; (None, None) when no rule matches."""
    if not text:
        return None, None
    for rule, pattern in RULES:
        matches = pattern.findall(text)
        for candidate in reversed(matches):  # the last statement of an answer is the final one
            number = normalize_number(candidate)
            if number is not None:
                return number, rule
    return None, None


def numbers_equal(a: str, b: str) -> bool:
    """Equal within 1e-6 relative tolerance (float round-off in model arithmetic)."""
    x, y = float(a), float(b)
    return abs(x - y) <= 1e-6 * max(1.0, abs(y))


class MathTask:
    name = "math"
    reads = ("messages", "reference")
    writes = ("answer",)

    def render(self, messages: Messages) -> Messages:
        """The stored question, with the answer-format instruction appended to the last user turn."""
        rendered = [dict(m) for m in messages]
        last_user = max(i for i, m in enumerate(rendered) if m["role"] == "user")
        rendered[last_user]["content"] = f"{rendered[last_user]['content']}\n\n{INSTRUCTION}"
        return rendered

    def parse(self, text: str) -> str | None:
        return extract_answer(text)[0]

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        gold = extract_answer(reference)[0]
        if gold is None:
            return None
        return int(answer is not None and numbers_equal(answer, gold))
