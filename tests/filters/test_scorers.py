import pyarrow as pa
import pytest

from tracebank import records
from tracebank.filters.base import to_scores
from tracebank.filters.correctness.correctness import Correctness
from tracebank.filters.diversity.exact import ExactDuplicate


def test_correctness_reasons():
    table = pa.table({
        "trace_id": ["ok", "wrong", "none", "failed", "noref"],
        "task": ["math"] * 5,
        "rationale": ["so #### 7", "so #### 8", "no idea", None, "#### 3"],
        "reference": ["#### 7", "#### 7", "#### 7", "#### 7", None],
    })  # fmt: skip
    result = Correctness().score(table).to_pylist()
    by_id = {r["trace_id"]: r for r in result}
    assert [by_id[t]["reason"] for t in table["trace_id"].to_pylist()] == [
        "correct",
        "mismatch",
        "no_answer",
        "no_rationale",
        "no_reference",
    ]
    assert [by_id[t]["passed"] for t in ["ok", "wrong", "none", "failed", "noref"]] == [True, False, False, False, None]
    assert by_id["ok"]["correct"] == 1 and by_id["wrong"]["correct"] == 0 and by_id["wrong"]["extracted"] == "8"


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_exact_duplicates_ignore_case_spacing_and_number_format_within_a_question():
    table = pa.table({
        "trace_id": ["a", "b", "c", "d", "e", "f"],
        "prompt_id": ["p1", "p1", "p1", "p2", "p1", "p1"],
        "messages": [_messages("Add 2 and 2?")] * 3 + [_messages("Add 3 and 3?")] + [_messages("Add 2 and 2?")] * 2,
        "rationale": ["Add 2 and 2.  #### 4", "add 2 and 2. #### 4", "Different. #### 4", "Add 2 and 2. #### 4",
                      "ADD 2 AND 2.\n#### 4.0", "It costs $1,000.50 so #### 4"],
        "correct": [1, 1, 1, 1, 1, 1],
    })  # fmt: skip
    rows = {r["trace_id"]: r for r in ExactDuplicate().score(table).to_pylist()}
    # Representative: correct first, then the shortest rationale (b, 19 characters), then trace_id.
    assert [rows[t]["is_duplicate"] for t in "abcdef"] == [1, 0, 0, 0, 1, 0]  # d answers another question
    assert rows["a"]["duplicate_of"] == "b" and rows["e"]["duplicate_of"] == "b" and rows["b"]["duplicate_of"] is None
    assert rows["b"]["group_size"] == 3 and rows["a"]["reason"] == "duplicate" and rows["c"]["reason"] == "unique"
    assert rows["a"]["rationale_prompts"] == 2  # the same text also answers p2's question
    assert rows["c"]["prompt_copies"] == 1 and rows["c"]["prompt_duplicate_of"] is None


def test_exact_duplicates_prefer_a_correct_representative():
    table = pa.table({
        "trace_id": ["a", "b"], "prompt_id": ["p", "p"], "messages": [_messages("Q?")] * 2,
        "rationale": ["So #### 5", "so  #### 5"], "correct": [0, 1],
    })  # fmt: skip
    rows = {r["trace_id"]: r for r in ExactDuplicate().score(table).to_pylist()}
    assert rows["b"]["is_duplicate"] == 0 and rows["a"]["is_duplicate"] == 1 and rows["a"]["duplicate_of"] == "b"


def test_exact_duplicates_across_prompt_ids_with_the_same_question_text():
    # The same question imported twice under different ids (other spacing and case), e.g. a test
    # question that is also a train question: one question, so its copies are duplicates.
    table = pa.table({
        "trace_id": ["t1", "t2", "t3"], "prompt_id": ["train-7", "test-3", "other"],
        "messages": [_messages("How many  apples?"), _messages("how many apples?"), _messages("How many pears?")],
        "rationale": ["3 + 4 = 7 #### 7", "3 + 4 = 7 #### 7", None], "correct": [None, None, None],
    })  # fmt: skip
    rows = {r["trace_id"]: r for r in ExactDuplicate().score(table).to_pylist()}
    assert rows["t1"]["prompt_copies"] == 2 and rows["t2"]["prompt_copies"] == 2
    assert {rows["t1"]["prompt_duplicate_of"], rows["t2"]["prompt_duplicate_of"]} == {None, "test-3"}
    assert sorted([rows["t1"]["is_duplicate"], rows["t2"]["is_duplicate"]]) == [0, 1]
    assert (
        rows["t3"]["passed"] is None and rows["t3"]["reason"] == "no_rationale" and rows["t3"]["is_duplicate"] is None
    )


def test_to_scores_is_long_form_with_numbers_and_text():
    table = pa.table({"trace_id": ["t1"], "task": ["math"], "rationale": ["#### 5"], "reference": ["#### 5"]})
    long = to_scores(Correctness(), Correctness().score(table), "d", "run-1", records.now())
    rows = {r["metric"]: r for r in long.to_pylist()}
    assert set(rows) == {"correct", "extracted", "expected", "detail"}
    assert rows["correct"]["value"] == 1.0 and rows["correct"]["detail"] is None
    assert rows["extracted"]["value"] is None and rows["extracted"]["detail"] == "5"
    assert rows["expected"]["detail"] == "5" and rows["detail"]["detail"] == "numeric"
    assert {r["filter_version"] for r in rows.values()} == {Correctness.version}
    assert {r["passed"] for r in rows.values()} == {True}


def test_to_scores_requires_the_contract_columns():
    class Broken:
        name, version, reads = "broken", "1", ()

    with pytest.raises(TypeError, match="no 'reason' column"):
        to_scores(Broken(), pa.table({"trace_id": ["t"], "passed": [True], "m": [1]}), "d", "r", records.now())
