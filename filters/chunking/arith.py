"""Safe arithmetic for step checks: a small expression parser (never ``eval``) and a math view of text.

:func:`evaluate` parses numbers (``1,000``, ``$12``, ``2.5``, ``20%``) and the operators
``+ - * / ^ **`` with parentheses and unary signs, computing exactly with fractions (a power with
a large or fractional exponent falls back to floats). :func:`math_view` rewrites the ways people
write those operators (``×``, ``x`` between numbers, ``·``, ``÷``, ``−``, LaTeX ``\\times``,
``\\cdot``, ``\\div``, ``\\frac{a}{b}``, ``20% of 50``) into that syntax and keeps, for every
character of the view, the offset of the original character it came from, so a step found in the
view has a span in the original text. :func:`agrees` decides whether a written result matches a
computed value, allowing for the rounding people write (see its docstring).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

Number = Fraction | float
NUMBER_TEXT = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+"
_OPERATOR = r"(?P<op>\*\*|[-+*/^()])|(?P<other>\S)"
_TOKEN = re.compile(rf"\s*(?:(?P<num>\$?\s?(?:{NUMBER_TEXT})%?)|{_OPERATOR})")
# The fraction reading: "25 / 1/3" is 25 divided by the fraction 1/3 (written without spaces).
_FRACTION_TOKEN = re.compile(rf"\s*(?:(?P<num>\$?\s?(?:\d+/\d+(?![\d.,])|{NUMBER_TEXT})%?)|{_OPERATOR})")
LEADING_ZERO = re.compile(r"\$?\s?0\d")  # "0900", "0730": times and codes, not quantities
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e30  # a value past this is not a step anyone checks by hand: not judged


class Token(NamedTuple):
    kind: str  # num | op | other
    text: str
    start: int  # offset in the expression text
    end: int


def tokenize(text: str, fractions: bool = False) -> list[Token]:
    """Number, operator and other tokens of ``text`` (``$`` and digit-group commas belong to numbers).

    With ``fractions``, digits/digits written without spaces is one number (``1/3``).
    """
    tokens = []
    for match in (_FRACTION_TOKEN if fractions else _TOKEN).finditer(text):
        group = match.lastgroup or "other"
        kind = "other" if group == "num" and LEADING_ZERO.match(match.group(group)) else group
        tokens.append(Token(kind, match.group(group), match.start(group), match.end(group)))
    return tokens


def number_value(text: str, percent: bool = True) -> Fraction:
    """The value of a number token: ``$1,000.50`` -> 1000.5; ``20%`` -> 1/5 (or 20 when not ``percent``)."""
    digits = text.replace("$", "").replace(",", "").replace(" ", "")
    if digits.endswith("%"):
        value = Fraction(digits[:-1])
        return value / 100 if percent else value
    return Fraction(digits)


class _Parser:
    """Recursive descent over tokens: expr := term (+|- term)*; term := unary (*|/ unary)*;
    unary := (+|-) unary | power; power := atom (^|** unary)?; atom := number | ( expr )."""

    def __init__(self, tokens: list[Token], percent: bool):
        self.tokens, self.at, self.percent = tokens, 0, percent

    def peek(self) -> str | None:
        return self.tokens[self.at].text if self.at < len(self.tokens) else None

    def take(self) -> Token:
        self.at += 1
        return self.tokens[self.at - 1]

    def expr(self) -> Number:
        value = self.term()
        while self.peek() in ("+", "-"):
            op, right = self.take().text, self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Number:
        value = self.unary()
        while self.peek() in ("*", "/") or (self.peek() == "(" and self.at > 0):  # 2(3+4): implicit times
            op = self.take().text if self.peek() != "(" else "*"
            right = self.unary()
            if op == "*":
                value = value * right
            elif right == 0:
                raise ZeroDivisionError
            else:
                value = value / right
        return value

    def unary(self) -> Number:
        if self.peek() in ("+", "-"):
            sign = self.take().text
            value = self.unary()
            return -value if sign == "-" else value
        return self.power()

    def power(self) -> Number:
        base = self.atom()
        if self.peek() in ("^", "**"):
            self.take()
            return _power(base, self.unary())
        return base

    def atom(self) -> Number:
        token = self.take() if self.at < len(self.tokens) else None
        if token is not None and token.kind == "num":
            return number_value(token.text, self.percent)
        if token is not None and token.text == "(":
            value = self.expr()
            if self.peek() != ")":
                raise ValueError("unbalanced parenthesis")
            self.take()
            return value
        raise ValueError(f"expected a number at {token.text if token else 'the end'}")


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1 and abs(exponent) <= MAX_EXPONENT:
        if base == 0 and exponent < 0:
            raise ZeroDivisionError
        return base**exponent.numerator if isinstance(base, Fraction) else float(base) ** int(exponent)
    if base < 0:
        raise ValueError("fractional power of a negative number")
    return float(base) ** float(exponent)


def evaluate_tokens(tokens: list[Token], percent: bool = True) -> Number | None:
    """The value of a whole token list as one expression; None when it is not one (or is undefined)."""
    if not tokens or any(t.kind == "other" for t in tokens):
        return None
    parser = _Parser(tokens, percent)
    try:
        value = parser.expr()
    except (ValueError, ZeroDivisionError, OverflowError, IndexError):
        return None
    if parser.at != len(tokens) or abs(float(value)) > MAX_MAGNITUDE:
        return None
    return value


def evaluate(text: str, percent: bool = True) -> Number | None:
    """The value of arithmetic ``text`` ("48/2", "$12 - $5", "(3+4)*2", "20% * 50"); None if it is not one."""
    return evaluate_tokens(tokenize(text), percent)


def decimals(text: str) -> int:
    """Digits after the decimal point in a written number ("$1,000.50" -> 2)."""
    digits = text.rstrip("%")
    return len(digits) - digits.index(".") - 1 if "." in digits else 0


def agrees(value: Number, written: str, rounding: bool, tolerance: float = 1e-6) -> bool:
    """Whether the written number ``written`` states ``value``.

    Equal within ``tolerance`` (relative); or ``value`` rounded to the written number of decimals
    (``10/3 = 3.33``, ``1.333*3 = 4``); or, when the computation divides (``rounding``), cut or
    rounded up to them as well (``7/2 = 3`` people). A percentage may be written as a fraction or
    as its number of hundredths (``15/60 = 25%``, ``0.25*100 = 25%``).
    """
    places = decimals(written)
    unit = 10.0**-places
    for claimed in {number_value(written, True), number_value(written, False)}:
        gap = abs(float(value) - float(claimed))
        if gap <= tolerance * max(1.0, abs(float(claimed))):
            return True
        if gap <= unit / 2 + 1e-9 or (rounding and gap < unit):
            return True
    return False


class MathView(NamedTuple):
    text: str  # the rewritten text
    origin: list[int]  # origin[i]: offset in the original text of the view's character i (plus one past the end)


Rewrite = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]
REWRITES: list[Rewrite] = [
    (re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}"), r"((\1)/(\2))"),  # \frac{a}{b}
    (re.compile(r"\\(?:times|cdot|ast)(?![a-zA-Z])|[×·∗⋅✕]"), "*"),
    (re.compile(r"\\div(?![a-zA-Z])|÷"), "/"),
    (re.compile(r"−|(?<=[\d)] )[–—](?= [\d($])"), "-"),  # minus sign; a spaced dash between numbers
    (re.compile(r"(?<=[\d)%])[ \t]*[xX][ \t]*(?=[$(]?[ \t]?\d|\()"), " * "),  # 0.2 x 50, (3+4)x2
    (re.compile(r"(?<=%)[ \t]+of[ \t]+(?=[$(]?\d)"), " * "),  # 20% of 50
    (re.compile(r"(?<=\d)\\,(?=\d{3}\b)|\{,\}"), ","),  # LaTeX digit groups: 1\,000, 1{,}000
    (re.compile(r"\\left|\\right|\\[,;:! ]|\\(?=[$%])"), ""),  # sizing, spacing, escaped \$ \%
    (re.compile(r"\$\$|\\[()\[\]]"), " "),  # math delimiters: $$ \( \) \[ \]
    (re.compile(r"[{\[]"), "("),
    (re.compile(r"[}\]]"), ")"),
]


def rewrite(view: MathView, pattern: re.Pattern[str], replacement: str | Callable[[re.Match[str]], str]) -> MathView:
    """Apply one substitution to ``view``, keeping each new character's original offset."""
    pieces, origin, position = [], [], 0
    for match in pattern.finditer(view.text):
        pieces.append(view.text[position : match.start()])
        origin.extend(view.origin[position : match.start()])
        new = match.expand(replacement) if isinstance(replacement, str) else replacement(match)
        pieces.append(new)
        origin.extend([view.origin[match.start()]] * len(new))
        position = match.end()
    if not pieces:
        return view
    pieces.append(view.text[position:])
    origin.extend(view.origin[position:])
    return MathView("".join(pieces), origin)


def math_view(text: str, drop: re.Pattern[str] | None = None) -> MathView:
    """``text`` with operators written in the parser's syntax (and ``drop`` matches removed), mapped back."""
    view = MathView(text, list(range(len(text) + 1)))
    if drop is not None:
        view = rewrite(view, drop, "")
    for _ in range(3):  # nested \frac: one level per pass
        view = rewrite(view, *REWRITES[0])
    for pattern, replacement in REWRITES[1:]:
        view = rewrite(view, pattern, replacement)
    return view
