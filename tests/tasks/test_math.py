import pytest

from tracebank.tasks import get_task
from tracebank.tasks.math import RULES, extract_answer, normalize_number

MATH = get_task("math")


@pytest.mark.parametrize(
    ("text", "answer", "rule"),
    [
        ("She has 3 + 4 = 7 apples.\n#### 7", "7", "hashes"),
        ("so the total is \\boxed{1,250}", "1250", "boxed"),
        ("Therefore, the answer is $18.00.", "18", "answer_is"),
        ("The final answer is: **42**", "42", "answer_is"),
        ("16 - 3 - 4 = 9 eggs\nA: 18", "18", "a_colon"),
        ("First 5 apples, then 12 apples in total", "12", "last_number"),
        ("#### 5\nWait, recheck.\n#### 6", "6", "hashes"),  # the last statement wins
    ],
)
def test_extraction_rules(text, answer, rule):
    assert extract_answer(text) == (answer, rule)


def test_every_rule_has_a_case_above():
    cases = {"hashes", "boxed", "answer_is", "a_colon", "last_number"}
    assert {name for name, _ in RULES} == cases


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1,000", "1000"),
        ("$5", "5"),
        ("50%", "50"),
        ("3/4", "0.75"),
        ("2.50", "2.5"),
        ("-7", "-7"),
        ("7.", "7"),
        ("x", None),
        ("1/0", None),
    ],
)
def test_normalize_number(raw, normal):
    assert normalize_number(raw) == normal


@pytest.mark.parametrize("text", [None, "", "no digits here", "####\n####"])
def test_no_answer(text):
    assert extract_answer(text) == (None, None)


def test_is_correct_compares_numbers_not_strings():
    assert MATH.is_correct("18", "Work...\n#### 18") == 1
    assert MATH.is_correct("18.0000001", "#### 18") == 1
    assert MATH.is_correct("19", "#### 18") == 0
    assert MATH.is_correct(None, "#### 18") == 0
    assert MATH.is_correct("18", None) is None


def test_render_appends_the_answer_format_to_the_last_user_turn():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "Q?"}]
    rendered = MATH.render(messages)
    assert rendered[0] == messages[0] and rendered[1]["content"].startswith("Q?\n\n")
    assert "####" in rendered[1]["content"]
    assert messages[1]["content"] == "Q?"  # the stored prompt is not mutated


def test_text_task_never_verifies():
    text = get_task("text")
    assert text.parse("#### 4") is None and text.is_correct("4", "#### 4") is None
