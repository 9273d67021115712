"""hint_leak: hinted traces that admit the hint are flagged with their evidence; self-made ones pass."""

import orjson
import pyarrow as pa
import pytest

from tracebank.errors import TracebankError
from tracebank.filters.base import make_scorer
from tracebank.filters.memorization.hint_leak import (
    NOTES,
    HintLeak,
    HintLeakOptions,
    copied_run,
    hint_note,
    solution_text,
)
from tracebank.filters.runner import FILTERS, ScoreConfig

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
REFERENCE = (
    "Tom starts with 3 apples and then he buys 4 more apples at the market on his way home from school "
    "so altogether he has 3 + 4 = <<3+4=7>>7 apples in his bag.\n#### 7"
)
ANSWER_LINEAGE = orjson.dumps({"hint": "answer", "answer": "7", "wrong": 2}).decode()
SOLUTION_LINEAGE = orjson.dumps({"hint": "solution", "answer": "7", "wrong": 2}).decode()
CLEAN = "Tom has 3 apples. He buys 4 more, so 3 + 4 = 7.\n#### 7"
LEAKS = {
    "The reference says the answer is 7, so 3 + 4 = 7.\n#### 7": "the reference says",
    "As the hint states, he ends with 7 apples.\n#### 7": "the hint states",
    "We are told the answer is 7. Indeed 3 + 4 = 7.\n#### 7": "told the answer is",
    "Given that the answer is 7, we check 3 + 4 = 7.\n#### 7": "given that the answer is",
    "The provided answer of 7 matches 3 + 4.\n#### 7": "provided answer",
    "Working backwards from the answer, 7 - 4 = 3 apples at the start.\n#### 7": "backwards from the answer",
    "I already know the final answer: 3 + 4 = 7.\n#### 7": "already know the final answer",
    "According to the reference solution, 3 + 4 = 7.\n#### 7": "according to the reference",
    "Here is a step-by-step solution that you've already provided: 3 + 4 = 7.\n#### 7": "you've already provided",
    "Using the answer you gave, 3 + 4 = 7.\n#### 7": "answer you gave",
}
BENIGN = [
    CLEAN,
    "3 + 4 = 7. The answer is 7.\n#### 7",  # stating one's own answer is what a solution does
    "The problem says Tom has 3 apples and buys 4 more: 3 + 4 = 7.\n#### 7",  # about the question
    "Given that Tom buys 4 more apples, he has 3 + 4 = 7.\n#### 7",
    "We are given 3 apples and 4 more, so the final answer is 7.\n#### 7",
    "If you gave Tom 4 apples, he would have 3 + 4 = 7.\n#### 7",  # second person about the problem
]


def _table(rows: list[dict]) -> pa.Table:
    columns = {
        "trace_id": [f"t{i}" for i in range(len(rows))],
        "task": [r.get("task", "math") for r in rows],
        "messages": [[{"role": "user", "content": r.get("question", QUESTION)}] for r in rows],
        "rationale": [r["rationale"] for r in rows],
        "reference": [r.get("reference", REFERENCE) for r in rows],
        "hinted": [r.get("hinted", True) for r in rows],
        "lineage": [r.get("lineage", ANSWER_LINEAGE) for r in rows],
    }
    return pa.table(columns)


def _score(rows: list[dict], **options) -> list[dict]:
    return HintLeak(HintLeakOptions(**options)).score(_table(rows)).to_pylist()


def test_phrases_that_point_at_the_hint_are_flagged_with_the_evidence():
    results = _score([{"rationale": text} for text in LEAKS])
    for (text, phrase), result in zip(LEAKS.items(), results, strict=True):
        assert (result["leaked"], result["passed"]) == (1, False), text
        assert result["reason"].startswith("phrase: ") and phrase in result["reason"].lower(), result["reason"]
        assert phrase in result["evidence"].lower()


def test_benign_look_alikes_pass():
    results = _score([{"rationale": text} for text in BENIGN])
    assert [(r["leaked"], r["passed"], r["reason"]) for r in results] == [(0, True, "ok")] * len(BENIGN)


def test_the_question_own_hint_or_reference_is_no_leak():
    question = "A treasure map's hint says to walk 12 steps north, then 5 more. How many steps in all?"
    rows = [
        {"question": question, "rationale": "The hint says to walk 12 steps, then 5 more: 17.\n#### 17"},
        {"rationale": "The hint says to walk 12 steps, then 5 more: 17.\n#### 17"},  # no map in this question
    ]
    first, second = _score(rows)
    assert first["passed"] and first["reason"] == "ok"
    assert not second["passed"] and second["reason"].startswith("phrase: ")


def test_unhinted_traces_pass_whatever_they_say_and_no_rationale_is_not_judged():
    rows = [
        {"rationale": next(iter(LEAKS)), "hinted": False, "lineage": None},
        {"rationale": next(iter(LEAKS)), "hinted": None, "lineage": None},  # built before the column existed
        {"rationale": None},
    ]
    results = _score(rows)
    assert [(r["leaked"], r["passed"], r["reason"]) for r in results] == [
        (0, True, "not_hinted"),
        (0, True, "not_hinted"),
        (None, None, "no_text"),
    ]


def test_a_copy_of_the_note_is_a_leak_but_its_format_instruction_is_not():
    note = hint_note("answer", "7", REFERENCE)
    copied = "Solve the problem step by step so that your reasoning reaches this answer on its own. 3 + 4 = 7."
    [result] = _score([{"rationale": copied + "\n#### 7"}])
    assert result["reason"].startswith("verbatim_note: ") and "reasoning reaches this answer" in result["evidence"]
    assert "reasoning reaches this answer on its own" in note  # the evidence is the note's own words
    # The task's answer-format instruction is in the prompt the trace answered: copying it is fine.
    instruction = "End with a final line of the form '#### <number>' that gives only the final numeric answer."
    [result] = _score([{"rationale": f"3 + 4 = 7. {instruction}\n#### 7"}], note_run_words=6)
    assert result["passed"], result["reason"]


def test_a_long_copy_of_the_reference_is_a_leak_a_short_shared_step_is_not():
    long_copy = "Tom starts with 3 apples and then he buys 4 more apples at the market on his way home from school."
    short_step = "Tom starts with 3 apples and buys 4 more, so 3 + 4 = 7 apples in his bag."
    results = _score([{"rationale": long_copy + "\n#### 7", "lineage": SOLUTION_LINEAGE},
                      {"rationale": short_step + "\n#### 7", "lineage": SOLUTION_LINEAGE}])  # fmt: skip
    assert results[0]["reason"].startswith("verbatim_reference: ") and "on his way home" in results[0]["evidence"]
    assert results[1]["passed"], results[1]["reason"]
    # Calculator annotations and the '#### 7' line are not words a copy must repeat.
    copy = "so altogether he has 3 + 4 = 7 apples in his bag"
    assert copied_run(copy, REFERENCE, 8) is None and copied_run(copy, solution_text(REFERENCE), 8) == copy


def test_the_note_gives_the_answer_or_the_solution():
    assert "the correct final answer is 7." in hint_note("answer", "7", REFERENCE)
    assert REFERENCE.strip() in hint_note("solution", "7", REFERENCE)
    assert REFERENCE not in hint_note("answer", "7", REFERENCE)
    assert set(NOTES) == {"answer", "solution"}
    with pytest.raises(TracebankError, match="hint must be one of answer, solution"):
        hint_note("everything", "7", REFERENCE)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"note_run_words": 3}, "note_run_words must be a whole number of words in \\[4, 200\\]"),
        ({"reference_run_words": 500}, "reference_run_words must be"),
        ({"note_run_words": True}, "note_run_words must be"),
        ({"reference_run_words": 10.5}, "reference_run_words must be"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(TracebankError, match=message):
        HintLeakOptions(**options)
    with pytest.raises(TracebankError, match=message):
        ScoreConfig("toy", ("hint_leak",), {"hint_leak": options})


def test_registered_with_its_options_and_reads():
    assert FILTERS["hint_leak"] is HintLeak
    scorer = make_scorer(HintLeak, {"reference_run_words": 12})
    assert scorer.options.reference_run_words == 12 and {"hinted", "lineage", "reference"} <= set(scorer.reads)
