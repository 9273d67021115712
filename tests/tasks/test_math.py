import pytest

from tracebank.tasks import get_task
from tracebank.tasks.base import Verdict
from tracebank.tasks.math import BARE, RULES, extract_answer, normalize_answer, normalize_number, reference_answer

MATH = get_task("math")

EXTRACTION_CASES = [
    # hashes: GSM8K's "#### N", the last one wins, trailing words after the number are ignored
    ("She has 3 + 4 = 7 apples.\n#### 7", "7", "hashes"),
    ("#### 5\nWait, recheck.\n#### 6", "6", "hashes"),
    ("#### 72 because she sells them", "72", "hashes"),
    ("#### \\frac{3}{4}", "0.75", "hashes"),
    # boxed: nested braces, LaTeX thousands separators, degrees, expressions kept for math-verify
    ("so the total is \\boxed{1,250}", "1250", "boxed"),
    ("\\boxed{1{,}000}", "1000", "boxed"),
    ("\\boxed{30^\\circ}", "30", "boxed"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", "boxed"),
    ("\\boxed{5\\text{ cm}}", "5", "boxed"),
    # answer_is: prose, bold, $...$ and \(...\) delimiters, units and percentages
    ("Therefore, the answer is $18.00.", "18", "answer_is"),
    ("The final answer is: **42**", "42", "answer_is"),
    ("The answer is 18 dollars per day.", "18", "answer_is"),
    ("The answer is 50%.", "50", "answer_is"),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", "0.5", "answer_is"),
    ("The answer is \\(x^2+1\\).", "x^2+1", "answer_is"),
    ("the answer is (1, 2)", "(1, 2)", "answer_is"),
    ("The answer is 3/4", "0.75", "answer_is"),
    # a_colon: the labeled GSM8K solutions' "A: N"
    ("16 - 3 - 4 = 9 eggs\nA: 18", "18", "a_colon"),
    ("So she makes 18 a day.\nA: $18.00", "18", "a_colon"),
    # last_number: the fallback, with commas, currency, signs and leading-dot decimals
    ("First 5 apples, then 12 apples in total", "12", "last_number"),
    ("It costs $1,234,567.50 in total", "1234567.5", "last_number"),
    ("so x = -5", "-5", "last_number"),
    ("16-3", "3", "last_number"),  # a minus after a digit is a subtraction, not a sign
    ("That is 3, 4 and 5", "5", "last_number"),  # a comma not in groups of three separates numbers
    ("about .5 of them", "0.5", "last_number"),
    ("−7 degrees", "-7", "last_number"),  # the Unicode minus sign
]


@pytest.mark.parametrize(("text", "answer", "rule"), EXTRACTION_CASES)
def test_extraction_rules(text, answer, rule):
    assert extract_answer(text) == (answer, rule)


def test_every_rule_has_a_case_above():
    assert {name for name, _, _ in RULES} == {rule for _, _, rule in EXTRACTION_CASES}


def test_rules_are_tried_in_order_and_the_first_that_finds_an_answer_decides():
    text = "The answer is 5.\n\\boxed{6}\n#### 7"
    assert extract_answer(text) == ("7", "hashes")
    assert extract_answer(text.replace("#### 7", "")) == ("6", "boxed")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1,000", "1000"),
        ("$5", "5"),
        ("\\$5", "5"),
        ("€5", "5"),
        ("50%", "50"),
        ("50\\%", "50"),
        ("3/4", "0.75"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac34", "0.75"),
        ("-\\frac{1}{2}", "-0.5"),
        ("2.50", "2.5"),
        ("-7", "-7"),
        ("+7", "7"),
        ("7.", "7"),
        ("1{,}000", "1000"),
        ("x", None),
        ("1/0", None),
    ],
)
def test_normalize_number(raw, normal):
    assert normalize_number(raw) == normal


@pytest.mark.parametrize(
    ("raw", "symbolic_ok", "normal"),
    [
        ("18 eggs", False, "18"),
        ("5 km/h", False, "5"),
        ("50 percent", False, "50"),
        ("$\\frac{1}{2}$", False, "0.5"),
        ("**12**", False, "12"),
        ("x^2 + 1", True, "x^2 + 1"),
        ("x^2 + 1", False, None),
        ("eighteen", False, None),
    ],
)
def test_normalize_answer_drops_units_and_keeps_expressions_only_where_allowed(raw, symbolic_ok, normal):
    assert normalize_answer(raw, symbolic_ok) == normal


@pytest.mark.parametrize("text", [None, "", "no digits here", "####\n####", "The answer is yes."])
def test_no_answer(text):
    assert extract_answer(text) == (None, None)


@pytest.mark.parametrize(
    ("reference", "answer", "rule"),
    [
        ("Work...\n#### 1,800", "1800", "hashes"),
        ("Janet sells 9 eggs.\nA: 18", "18", "a_colon"),
        ("So the value is $\\boxed{\\frac{1}{2}}$.", "0.5", "boxed"),
        ("18", "18", "bare"),
        ("\\frac{\\pi}{2}", "\\frac{\\pi}{2}", "bare"),
        ("(1, 2)", "(1, 2)", "bare"),
    ],
)
def test_reference_forms(reference, answer, rule):
    assert reference_answer(reference) == (answer, rule)
    assert BARE[0] == "bare"


def test_is_correct_compares_numbers_not_strings():
    assert MATH.is_correct("18", "Work...\n#### 18") == 1
    assert MATH.is_correct("18.0000001", "#### 18") == 1
    assert MATH.is_correct("19", "#### 18") == 0
    assert MATH.is_correct(None, "#### 18") == 0
    assert MATH.is_correct("18", None) is None
    assert MATH.is_correct("0.5", "#### 1/2") == 1


def test_verify_says_why():
    assert MATH.verify("19", "#### 18").reason == "mismatch"
    assert MATH.verify("19", "#### 18").expected == "18"
    assert MATH.verify(None, "#### 18").reason == "no_answer"
    assert MATH.verify("18", "no answer in here").reason == "no_reference"
    assert MATH.verify("18", "A: 18").detail == "numeric"


def test_vote_key_groups_equal_values():
    assert MATH.vote_key("18") == MATH.vote_key("18.0") == MATH.vote_key(MATH.parse("so $18.00"))
    assert MATH.vote_key("18") != MATH.vote_key("19")
    assert MATH.vote_key("x + 1") == MATH.vote_key("x+1")
    assert MATH.vote_key(None) is None


def test_render_appends_the_answer_format_to_the_last_user_turn():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "Q?"}]
    rendered = MATH.render(messages)
    assert rendered[0] == messages[0] and rendered[1]["content"].startswith("Q?\n\n")
    assert "####" in rendered[1]["content"]
    assert messages[1]["content"] == "Q?"  # the stored prompt is not mutated


def test_text_task_never_verifies():
    text = get_task("text")
    assert text.parse("#### 4") is None and text.is_correct("4", "#### 4") is None
    assert text.verify("4", "#### 4").reason == "no_reference"


@pytest.mark.parametrize(("correct", "reason"), [(2, "correct"), (True, "correct"), (1, "fine"), (0, "")])
def test_verdicts_reject_bad_values(correct, reason):
    with pytest.raises(ValueError):
        Verdict(correct, reason)
