import pyarrow as pa

from tracebank.filters.correctness.consistency import SelfConsistency, majority


def score(rows: list[tuple[str, str, str, str, str | None]]) -> dict[str, dict]:
    trace_id, prompt_id, task, policy, rationale = (list(column) for column in zip(*rows, strict=True))
    table = pa.table(
        {"trace_id": trace_id, "prompt_id": prompt_id, "task": task, "policy": policy, "rationale": rationale}
    )
    result = SelfConsistency().score(table)
    assert result.num_rows == len(rows)  # never drops a trace
    return {r["trace_id"]: r for r in result.to_pylist()}


def test_majority_and_its_share_count_samples_without_an_answer():
    assert majority(["18", "18", "20", None]) == ("18", 0.5, False)
    assert majority(["1", "2"]) == ("1", 0.5, True)
    assert majority([None, None]) == (None, 0.0, False)


def test_agreement_with_the_majority_answer_by_value():
    rows = score([
        ("a", "p", "math", "teacher", "so #### 18"),
        ("b", "p", "math", "teacher", "The answer is $18.00."),
        ("c", "p", "math", "teacher", "#### 20"),
        ("d", "p", "math", "teacher", "I give up"),
    ])  # fmt: skip
    assert [rows[t]["agrees"] for t in "abcd"] == [1, 1, 0, 0]
    assert [rows[t]["reason"] for t in "abcd"] == ["agrees", "agrees", "disagrees", "no_answer"]
    assert [rows[t]["passed"] for t in "abcd"] == [True, True, False, False]
    assert {rows[t]["vote_share"] for t in "abcd"} == {0.5} and {rows[t]["votes"] for t in "abcd"} == {4}
    assert {rows[t]["majority"] for t in "abcd"} == {"18"}


def test_ties_and_single_samples_are_not_judged():
    rows = score([
        ("a", "tie", "math", "teacher", "#### 1"),
        ("b", "tie", "math", "teacher", "#### 2"),
        ("c", "alone", "math", "teacher", "#### 3"),
    ])  # fmt: skip
    assert [(rows[t]["reason"], rows[t]["passed"], rows[t]["agrees"]) for t in "abc"] == [
        ("tie", None, 0),
        ("tie", None, 0),
        ("single_sample", None, 1),
    ]
    assert rows["a"]["majority"] is None


def test_students_are_judged_against_the_teachers_majority_but_do_not_vote():
    rows = score([
        ("t1", "p", "math", "teacher", "#### 7"),
        ("t2", "p", "math", "teacher", "#### 7"),
        ("s1", "p", "math", "student", "#### 9"),
        ("s2", "p", "math", "student", "#### 9"),
        ("s3", "p", "math", "student", "#### 9"),
    ])  # fmt: skip
    assert rows["s1"]["majority"] == "7" and rows["s1"]["reason"] == "disagrees" and rows["s1"]["votes"] == 2
    assert rows["t1"]["vote_share"] == 1.0


def test_prompts_are_separate_and_code_does_not_vote():
    rows = score([
        ("a", "p1", "math", "teacher", "#### 1"),
        ("b", "p2", "math", "teacher", "#### 2"),
        ("c", "p2", "math", "teacher", "#### 2"),
        ("d", "p3", "code", "teacher", "def f():\n    return 1\n"),
        ("e", "p3", "code", "teacher", "def f():\n    return 1\n"),
    ])  # fmt: skip
    assert rows["a"]["reason"] == "single_sample" and rows["b"]["reason"] == "agrees"
    assert rows["d"]["reason"] == rows["e"]["reason"] == "not_applicable" and rows["d"]["passed"] is None
