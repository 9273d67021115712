"""The arithmetic step checker: right steps pass, wrong ones are caught, ambiguous ones are not judged."""

from fractions import Fraction

import pytest

from tracebank.filters.chunking.arith import agrees, evaluate, math_view
from tracebank.filters.chunking.steps import annotation_steps, find_steps


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("48/2", 24),
        ("$12 - $5", 7),
        ("(3+4)*2", 14),
        ("2(3+4)", 14),
        ("-5 + 3", -2),
        ("1,000 * 2", 2000),
        ("20% * 50", 10),
        ("2^10", 1024),
        ("2**3", 8),
        ("10/4", Fraction(5, 2)),
        (".25/.05", 5),
    ],
)
def test_evaluate_computes_exactly(text, value):
    assert evaluate(text) == value


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('true')", "x + 1", "3 +", "(3 + 4", "1/0", "2 ** 1000 ** 10", "abs(3)", "", "3 4"],
)
def test_evaluate_refuses_what_is_not_arithmetic(text):
    assert evaluate(text) is None  # parsed by a whitelist grammar: names, calls and junk are no expression


def test_math_view_maps_every_character_back():
    text = r"So $3 \times 4 = 12$ and 0.2 x 50 = 10 and \frac{1}{2} \cdot 10 = 5"
    view = math_view(text)
    assert "3 * 4 = 12" in view.text and "0.2 * 50" in view.text and "((1)/(2)) * 10" in view.text
    at = view.text.index("12")
    assert text[view.origin[at] : view.origin[at] + 2] == "12"


@pytest.mark.parametrize(
    ("value", "written", "rounding", "ok"),
    [
        (Fraction(10, 3), "3.33", True, True),  # rounded to the written decimals
        (Fraction(7, 2), "3", True, True),  # divided, then cut to whole people
        (Fraction(7, 2), "4", True, True),  # or rounded up
        (Fraction(11, 2), "5", False, True),  # half-way: either way
        (Fraction(11, 2), "7", False, False),
        (Fraction(1, 4), "25%", True, True),  # a fraction written as a percentage
        (Fraction(25), "25%", False, True),  # hundredths written as a percentage
        (Fraction(1999, 1000), "2", False, True),
        (Fraction(12), "13", False, False),
    ],
)
def test_agrees_allows_the_rounding_people_write(value, written, rounding, ok):
    assert agrees(value, written, rounding) is ok


RIGHT = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "She earned 0.2 x 50 = $10.",
    "$12 - $5 = $7",
    "3 × 4 = 12 apples",
    r"$3 \times 4 = 12$",
    r"\frac{1}{2} \cdot 10 = 5",
    "20% of 50 = 10",
    "15/60 = 25%",
    "3*4 = 12*2 = 24",
    "10/3 = 3.33",
    "7/2 = 3 people get a full share",
    "5 - 8 = -3",
    "$1,000 * 2 = $2,000",
    "It costs $5.50 * 2 = $11.00.",
    "25 / 1/3 = 75",  # a fraction written without spaces is one number
    "$2.50 - $2.24 = 26 cents",
    "the average is 100 / 3 ≈ 33.3",
]


@pytest.mark.parametrize("text", RIGHT)
def test_right_steps_pass(text):
    steps = find_steps(text)
    assert steps, "the step must be found"
    assert all(s.ok for s in steps), [(s.text, s.value) for s in steps]


WRONG = [
    ("She has 3 + 4 = 8 apples.", "3 + 4 = 8", 7),
    ("16 - 3 = <<16-3=13>>12 eggs", "16 - 3 = <<16-3=13>>12", 13),  # the text after the annotation disagrees
    ("<<10*(2/3)=8>>8 liters", "<<10*(2/3)=8>>8", 20 / 3),  # the annotation itself is wrong
    ("3*4 = 12*2 = 25", "12*2 = 25", 24),
    ("So 2 + 2 = 5.", "2 + 2 = 5", 4),
    (r"$$ 6 \times 7 = 43 $$", r"6 \times 7 = 43", 42),
    ("She pays $19.50 * (100/75) = $23.", "$19.50 * (100/75) = $23", 26),
]


@pytest.mark.parametrize(("text", "step", "value"), WRONG)
def test_wrong_steps_are_caught_with_their_span_and_value(text, step, value):
    wrong = [s for s in find_steps(text) if not s.ok]
    assert len(wrong) == 1
    assert wrong[0].text == step and text[wrong[0].start : wrong[0].end] == step
    assert wrong[0].value == pytest.approx(value)


@pytest.mark.parametrize(
    "text",
    [
        "1 1/2 * 4 = 6",  # a mixed number: not judged
        "5 apples * 3 = 16",  # words inside the left side
        "60 students x 2/3 = 40 students",  # the left operand is words
        "12 x 1 and 1/4 = 15",  # a mixed number
        "1:30 + 2 = 3:30",  # a time
        "2x + 3 = 11",  # algebra
        "100/5 = 5A/5",
        "3 * 0.5 = 1.5 million",
        "15 + 20% = 18",  # "plus 20% of 15"
        "12 = 3 * 5",  # a bare number first: a label, not a computation
        "x = 5",
        "0900-0130 = 0730",  # clock times
        "if a == 3 + 4 then",
    ],
)
def test_ambiguous_equations_are_not_judged(text):
    assert find_steps(text) == []


def test_an_inline_equation_and_its_annotation_are_one_step():
    steps = find_steps("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")
    assert [(s.source, s.ok, s.written) for s in steps] == [("both", True, "9")]


def test_annotations_with_variables_are_not_judged():
    assert annotation_steps("Let <<X*.25=19.5>>19.5 be the discount") == []
