"""Math problems (GSM8K, MATH and alike): render, extract the final answer, verify it.

``extract_answer`` tries the rules in :data:`RULES` in order; within a rule the last match wins
(the last statement of an answer is the final one); the first rule that yields an answer decides.
References are read with the same rules plus ``bare`` (a one-line reference is the answer
itself). Each rule is named beside its pattern, and tests/tasks/test_math.py has a case for each.

Answers are compared as numbers when both sides are plain numbers (fast, in-process), and with
math-verify (symbolic equivalence: ``\\frac{1}{2}`` = ``0.5``, ``(x+1)^2`` = ``x^2+2x+1``)
otherwise, in worker processes (:mod:`tracebank.tasks.symbolic`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction

from tracebank.tasks import symbolic
from tracebank.tasks.base import Messages, Verdict, edit_last_user

INSTRUCTION = (
    "Solve the problem step by step. "
    "End with a final line of the form '#### <number>' that gives only the final numeric answer."
)

# Commas: thousands separators only in groups of three ("1,000,000"); elsewhere a comma separates
# numbers ("3, 4 and 5"). A minus sign counts only where it cannot be a subtraction ("16-3" is 3).
_NUMBER = r"(?<![\w.])[-−]?\s?[$€£¥₹]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:\s?/\s?\d+)?"
NUMBER = re.compile(rf"{_NUMBER}(?<=\d)")  # (?<=\d): it must end in a digit, so "." or "$" alone is not one
LEADING_NUMBER = re.compile(rf"\s*\\?\$?\s*({_NUMBER}(?<=\d))")
# A number followed by at most a unit: "18", "$18.00", "50%", "50 percent", "5 cm", "12 eggs per day".
NUMBER_WITH_UNIT = re.compile(rf"({_NUMBER}(?<=\d))\s*(?:%|percent\b|[^\W\d_][^\d=<>]{{0,40}})?\.?")
LATEX_FRACTION = re.compile(r"^([-−]?)\\[dt]?frac\{?\s*(\d+)\s*\}?\{?\s*(\d+)\s*\}?$")
LATEX_MARK = re.compile(r"\\[a-zA-Z]+|[\^_{}]")
# Plain-text math: digits, operators, brackets and one- or two-letter names ("(1, 2)", "2x+1", "pi/2").
MATHY = re.compile(r"(?:[\d\s+\-*/^().,=<>\[\]|√π]|(?<![A-Za-z])[A-Za-z]{1,2}(?![A-Za-z]))+")
LATEX_NOISE = [
    (re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{([^{}]*)\}"), r" \1"),  # units: 5\text{ cm}
    (re.compile(r"\\[,;:! ]|\\(?:left|right|displaystyle)\b"), ""),  # spacing and sizing
    (re.compile(r"\^\s*\{?\\circ\}?|°"), ""),  # degrees: 30^\circ
    (re.compile(r"\{,\}"), ","),  # LaTeX thousands separator: 1{,}000
    (re.compile(r"\\([$%])"), r"\1"),  # escaped \$ and \%
]


def normalize_number(text: str) -> str | None:
    """Canonical form of a numeric string: "$1,000.00" -> "1000", "3/4" -> "0.75", "50%" -> "50".

    Commas, currency signs (``$ € £ ¥ ₹``, ``\\$``), spaces and a trailing percent sign are dropped;
    integral values lose their decimals; fractions (``3/4``, ``\\frac{3}{4}``) become decimals.
    Returns None for text that is not a number.
    """
    cleaned = text.strip().replace("−", "-").replace("\\$", "").replace("\\%", "%").replace("{,}", ",")
    fraction = LATEX_FRACTION.match(cleaned)
    if fraction:
        cleaned = f"{fraction.group(1)}{fraction.group(2)}/{fraction.group(3)}"
    for mark in (",", "$", "€", "£", "¥", "₹", " "):
        cleaned = cleaned.replace(mark, "")
    cleaned = cleaned.rstrip("%").rstrip(".").lstrip("+")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return format(float(value), ".10g")


def _strip_wrappers(text: str) -> str:
    """Delimiters around an answer: $...$, \\(...\\), \\[...\\], **bold**, a trailing period."""
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            text = text[len(left) : -len(right)].strip()
    for pattern, replacement in LATEX_NOISE:
        text = pattern.sub(replacement, text)
    return text.strip().rstrip(".").strip()


def normalize_answer(raw: str, symbolic_ok: bool) -> str | None:
    """A candidate's answer: a canonical number if it is one (units and % dropped), else — where the
    rule allows expressions — the cleaned expression for symbolic comparison; else None."""
    text = _strip_wrappers(raw)
    number = normalize_number(text)
    if number is not None:
        return number
    with_unit = NUMBER_WITH_UNIT.fullmatch(text)
    if with_unit:
        return normalize_number(with_unit.group(1))
    if symbolic_ok and text and len(text) <= 300:
        return text
    return None


def _boxed(text: str) -> list[str]:
    """Contents of every \\boxed{...} / \\fbox{...}, with nested braces matched."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append(text[start:i])
                break
    return found


def _after_answer(text: str) -> list[str]:
    """What follows "answer is", "answer:" or "answer =", up to the end of its sentence or $...$."""
    found = []
    for match in re.finditer(r"answer\s*(?:is|was|:|=)?\s*:?\s*(?:\*\*)?\s*([^\n]*)", text, re.IGNORECASE):
        rest = match.group(1)
        delimited = re.match(r"(\$\$?)(.+?)\1|\\\((.+?)\\\)", rest)
        if delimited:
            found.append(delimited.group(0))
        else:
            found.append(re.split(r"\.(?:\s|$)|;|\*\*", rest)[0])
    return found


def _lines_after(marker: str) -> Callable[[str], list[str]]:
    pattern = re.compile(marker + r"([^\n]*)")
    return lambda text: pattern.findall(text)


# (name, finder, may the answer be an expression?) — finders return candidates in text order.
Rule = tuple[str, Callable[[str], list[str]], bool]
RULES: list[Rule] = [
    # GSM8K's own reference format: "#### 72".
    ("hashes", _lines_after(r"####\s*"), False),
    # LaTeX convention (MATH, most R1-style models): "\boxed{72}", "\boxed{\frac{1}{2}}".
    ("boxed", _boxed, True),
    # Prose: "The answer is 72", "Final answer: $72", "answer = 72", "The final answer is $\frac{1}{2}$".
    ("answer_is", _after_answer, False),
    # The labeled GSM8K model solutions end with "A: 72".
    ("a_colon", _lines_after(r"(?m)^\s*A:\s*"), False),
    # Fallback (lm-eval's flexible extract): the last number anywhere in the text.
    ("last_number", lambda text: NUMBER.findall(text), False),
]
# References also accept a bare answer: a whole one-line reference that is a number or math ("18",
# "\frac{1}{2}", "(1, 2)"); a line of prose is not an answer.
BARE: Rule = ("bare", lambda text: [text] if "\n" not in text.strip() and len(text.strip()) <= 300 else [], False)
REFERENCE_RULES: list[Rule] = [*RULES[:-1], BARE, RULES[-1]]


def _answer(candidate: str, symbolic_ok: bool) -> str | None:
    # A candidate with LaTeX in it, or plain-text math, may be an expression, whatever rule found it.
    text = candidate.strip()
    mathy = bool(LATEX_MARK.search(text)) or (len(text) <= 60 and MATHY.fullmatch(text) is not None)
    answer = normalize_answer(candidate, symbolic_ok or mathy)
    if answer is None:  # "#### 72 because ..." -> the number it starts with
        leading = LEADING_NUMBER.match(candidate)
        answer = normalize_number(leading.group(1)) if leading else None
    return answer


def extract_answer(text: str | None, rules: Sequence[Rule] = RULES) -> tuple[str | None, str | None]:
    """(normalized answer, rule name) from a completion; (None, None) when no rule matches."""
    if not text:
        return None, None
    for rule, finder, symbolic_ok in rules:
        for candidate in reversed(finder(text)):  # the last statement of an answer is the final one
            answer = _answer(candidate, symbolic_ok)
            if answer is not None:
                return answer, rule
    return None, None


def reference_answer(reference: str | None) -> tuple[str | None, str | None]:
    """(answer, rule) of a reference: "#### 72", "A: 72", "...\\boxed{\\frac{1}{2}}", or a bare "72"."""
    return extract_answer(reference, REFERENCE_RULES)


def is_number(answer: str) -> bool:
    return normalize_number(answer) is not None


def numbers_equal(a: str, b: str) -> bool:
    """Equal within 1e-6 relative tolerance (float round-off in model arithmetic)."""
    x, y = float(Fraction(normalize_number(a) or a)), float(Fraction(normalize_number(b) or b))
    return abs(x - y) <= 1e-6 * max(1.0, abs(y))


class MathTask:
    name = "math"
    reads = ("messages", "reference")
    writes = ("answer",)
    votes = True

    def render(self, messages: Messages) -> Messages:
        """The stored question, with the answer-format instruction appended to the last user turn."""
        return edit_last_user(messages, lambda question: f"{question}\n\n{INSTRUCTION}")

    def parse(self, text: str) -> str | None:
        return extract_answer(text)[0]

    def _first_pass(self, answer: str | None, gold: str | None) -> Verdict | None:
        """The verdict when no symbolic check is needed, else None."""
        if gold is None:
            return Verdict(None, "no_reference")
        if answer is None:
            return Verdict(0, "no_answer", expected=gold)
        if is_number(gold) and is_number(answer):
            same = numbers_equal(answer, gold)
            return Verdict(int(same), "correct" if same else "mismatch", expected=gold, detail="numeric")
        return None

    def verify_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[Verdict]:
        golds: dict[str | None, str | None] = {}
        verdicts: list[Verdict | None] = []
        symbolic_jobs: list[tuple[int, str, str]] = []
        for i, (answer, reference) in enumerate(pairs):
            if reference not in golds:
                golds[reference] = reference_answer(reference)[0]
            verdict = self._first_pass(answer, golds[reference])
            verdicts.append(verdict)
            if verdict is None:
                symbolic_jobs.append((i, golds[reference], answer))  # type: ignore[arg-type]
        checked = symbolic.check_many([(gold, answer) for _, gold, answer in symbolic_jobs])
        for (i, gold, _), (correct, reason) in zip(symbolic_jobs, checked, strict=True):
            verdicts[i] = Verdict(correct, reason, expected=gold, detail="math-verify")
        return verdicts  # type: ignore[return-value]

    def verify(self, answer: str | None, reference: str | None) -> Verdict:
        return self.verify_many([(answer, reference)])[0]

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        return self.verify(answer, reference).correct

    def vote_key(self, answer: str | None) -> str | None:
        """Numbers vote by value (9 significant digits); expressions by their text without spaces."""
        if answer is None:
            return None
        if is_number(answer):
            return format(float(Fraction(normalize_number(answer))), ".9g")  # type: ignore[arg-type]
        return re.sub(r"\s+", "", answer)
