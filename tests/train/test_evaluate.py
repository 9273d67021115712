import pytest

from tests.fakes import QUESTIONS
from tracebank import catalog
from tracebank.builders.base import Response
from tracebank.errors import TracebankError
from tracebank.train.evaluate import EvalConfig, evaluate, wilson_interval


class HalfRight:
    """Answers the first half of the questions (alphabetically) right, the rest wrong."""

    backend = "fake"

    def __init__(self):
        self.right = set(sorted(QUESTIONS)[: len(QUESTIONS) // 2])

    def generate(self, requests):
        for request in requests:
            question = next(q for q in QUESTIONS if q in request.messages[-1]["content"])
            answer = int(QUESTIONS[question]) + (0 if question in self.right else 1)
            yield Response(request.key, f"Thinking.\n#### {answer}", "stop", 10, 5, 0.0)


def test_accuracy_matches_the_verifier_and_is_stored(location, mixed_release):
    result = evaluate(location, EvalConfig("my-student", mixed_release, split="train"), teacher=HalfRight())
    assert (result.prompts, result.verified, result.correct) == (6, 6, 3) and result.accuracy == 0.5
    assert result.ci_low < 0.5 < result.ci_high
    with catalog.Catalog(location) as cat:
        stored = cat.sql("SELECT correct, reason, student FROM evals WHERE eval_run = ?", [result.eval_run]).to_dicts()
        counters = cat.sql("SELECT unnest(counters) AS c FROM runs WHERE run_id = ?", [result.eval_run])["c"].to_list()
    assert sorted((r["correct"], r["reason"]) for r in stored) == [(0, "mismatch")] * 3 + [(1, "correct")] * 3
    assert {r["student"] for r in stored} == {"my-student"}
    assert {"name": "accuracy", "value": 0.5} in counters


def test_prompts_by_split_hint_need_no_traces(location, mixed_release, tmp_path):
    from tests.conftest import write_jsonl
    from tracebank.importer import ColumnMap, ImportConfig, import_data

    question, answer = next(iter(QUESTIONS.items()))
    dataset = mixed_release.split("@")[0]
    path = write_jsonl(tmp_path / "held.jsonl", [{"question": question + " (again)", "answer": f"#### {answer}"}])
    import_data(
        location,
        ImportConfig(str(path), dataset, ColumnMap.parse("prompt=question,reference=answer"), split_hint="heldout"),
    )
    result = evaluate(location, EvalConfig("s", dataset=dataset, split_hint="heldout"), teacher=HalfRight())
    assert (result.prompts, result.split, result.release) == (1, "heldout", dataset)
    with catalog.Catalog(location) as cat:
        assert cat.sql("SELECT version, split FROM evals").to_dicts() == [{"version": None, "split": "heldout"}]


def test_limit_and_unknown_split(location, mixed_release):
    assert evaluate(location, EvalConfig("s", mixed_release, split="train", limit=2), teacher=HalfRight()).prompts == 2
    with pytest.raises(TracebankError, match="no prompts in split 'test'"):
        evaluate(location, EvalConfig("s", mixed_release, split="test"), teacher=HalfRight())


def test_wilson_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(5, 10)
    assert round(low, 4) == 0.2366 and round(high, 4) == 0.7634
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"release": "d@v1", "limit": 0}, "limit"),
        ({"release": "d@v1", "max_new_tokens": 0}, "max_new_tokens"),
        ({}, "either --release"),
        ({"release": "d@v1", "dataset": "d", "split_hint": "test"}, "either --release"),
        ({"dataset": "d"}, "either --release"),
        ({"release": "d@12"}, "expected DATASET@vN"),
    ],
)
def test_eval_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        EvalConfig("s", **kwargs)


@pytest.mark.slow
def test_real_student_on_two_prompts(location, mixed_release):
    from tracebank.models import DEFAULT_MODEL

    result = evaluate(location, EvalConfig(DEFAULT_MODEL, mixed_release, split="train", limit=2, max_new_tokens=16))
    assert result.prompts == 2 and result.verified == 2 and 0 <= result.correct <= 2
