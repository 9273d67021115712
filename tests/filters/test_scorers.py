import pyarrow as pa
import pytest

from tracebank import records
from tracebank.filters.base import to_scores
from tracebank.filters.correctness import Correctness
from tracebank.filters.duplicates import ExactDuplicate


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


def test_exact_duplicates_keep_first_per_prompt_and_ignore_case_and_spacing():
    table = pa.table({
        "trace_id": ["a", "b", "c", "d", "e"],
        "prompt_id": ["p1", "p1", "p1", "p2", "p1"],
        "rationale": ["Add 2 and 2.  #### 4", "add 2 and 2. #### 4", "Different. #### 4", "Add 2 and 2. #### 4", "ADD 2 AND 2.\n#### 4"],
    })  # fmt: skip
    rows = {r["trace_id"]: r for r in ExactDuplicate().score(table).to_pylist()}
    assert [rows[t]["is_duplicate"] for t in "abcde"] == [0, 1, 0, 0, 1]  # d is another prompt
    assert rows["b"]["duplicate_of"] == "a" and rows["e"]["duplicate_of"] == "a" and rows["a"]["duplicate_of"] is None
    assert rows["a"]["group_size"] == 3 and rows["b"]["reason"] == "duplicate" and rows["c"]["reason"] == "unique"


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
