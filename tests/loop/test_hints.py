"""Rationalization: only failed prompts with a reference are asked again, with the answer as a hint; the
hinted traces are tagged, scored for correctness and leaks, and curated by hinted.yaml."""

import orjson
import pytest

from tests import ROOT
from tests.cli.test_cli import assert_one_line_error, cli
from tests.conftest import write_jsonl
from tests.fakes import QUESTIONS
from tracebank import catalog
from tracebank.builders.base import Request, Response
from tracebank.builders.plans import Shaping
from tracebank.builders.runner import BuildConfig, build
from tracebank.builders.stub_server import StubOptions, StubServer
from tracebank.curate.policy import Policy, decide
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.loop.hints import FINAL_ANSWERS, RationalizeConfig, _hints, describe, rationalize

POLICY = ROOT / "recipes" / "policies" / "hinted.yaml"
QUESTION_LIST = list(QUESTIONS)
ANSWERS = {q: int(a) for q, a in QUESTIONS.items()}
# By question index: how the teacher answers when asked plainly, and when given the hint.
PLAIN_RIGHT = {3}  # q3 solved; q0-q2 failed (with a reference); q4, q5 failed (no reference)
HINTED = {0: "clean", 1: "leak", 2: "wrong"}
NO_REFERENCE = {4, 5}


class HintTeacher:
    """Answers plain requests right only for PLAIN_RIGHT; hinted ones as HINTED says. Records every request."""

    backend = "fake"

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def generate(self, requests):
        for request in requests:
            self.requests.append(request)
            content = request.messages[-1]["content"]
            index = next(i for i, q in enumerate(QUESTION_LIST) if q in content)
            answer = ANSWERS[QUESTION_LIST[index]]
            if "Hint, for you alone" not in content:
                text = f"Let me think.\n#### {answer if index in PLAIN_RIGHT else answer + 1}"
            elif HINTED[index] == "clean":
                text = f"Working it out step by step gives {answer}.\n#### {answer}"
            elif HINTED[index] == "leak":
                text = f"The reference says the answer is {answer}, so that is it.\n#### {answer}"
            else:
                text = f"I get {answer + 2}.\n#### {answer + 2}"
            yield Response(request.key, text, "stop", prompt_tokens=20, completion_tokens=10, latency_s=0.0)


@pytest.fixture
def failed(location, tmp_path) -> str:
    """Six math prompts (q4, q5 without a reference) with one plain teacher trace each, q3's the only right one."""
    rows = [
        {"id": f"q{i}", "question": q, "answer": None if i in NO_REFERENCE else f"So {a} in all.\n#### {a}"}
        for i, (q, a) in enumerate(QUESTIONS.items())
    ]
    config = ImportConfig(str(write_jsonl(tmp_path / "m.jsonl", rows)), "toy", ColumnMap.parse("prompt=question,reference=answer,id=id"))  # fmt: skip
    import_data(location, config)
    build(location, BuildConfig("toy", samples=1), HintTeacher())
    return "toy"


def _hinted_traces(location) -> dict[str, dict]:
    with catalog.Catalog(location) as cat:
        rows = cat.arrow(
            "SELECT p.messages[1].content AS question, t.* FROM traces t JOIN prompts p USING (prompt_id) "
            "WHERE t.hinted ORDER BY t.trace_id"
        ).to_pylist()
    return {row["question"]: row for row in rows}


def test_only_failed_prompts_with_a_reference_are_asked_with_the_final_answer_once(location, failed):
    teacher = HintTeacher()
    result = rationalize(location, RationalizeConfig(failed), teacher)
    assert result.scored_first == 6  # the plain traces had no verdict: scored before choosing
    assert (result.prompts_failed, result.prompts_solved, result.skipped_no_reference) == (3, 1, 2)
    assert (result.prompts_asked, result.sent, result.traces) == (3, 3, 3)
    asked = {next(q for q in QUESTION_LIST if q in r.messages[-1]["content"]) for r in teacher.requests}
    assert asked == {QUESTION_LIST[i] for i in HINTED}
    for request in teacher.requests:
        question = next(q for q in QUESTION_LIST if q in request.messages[-1]["content"])
        assert f"the correct final answer is {ANSWERS[question]}." in request.messages[-1]["content"]
        assert "So " not in request.messages[-1]["content"]  # the answer only, not the reference solution
    traces = _hinted_traces(location)
    assert set(traces) == {QUESTION_LIST[i] for i in HINTED}
    for question, trace in traces.items():
        assert (trace["hinted"], trace["strategy"], trace["round"], trace["policy"]) == (True, "hint", None, "teacher")
        lineage = orjson.loads(trace["lineage"])
        assert lineage == {"hint": "answer", "answer": str(ANSWERS[question]), "wrong": 1}  # not the reference
    rerun = HintTeacher()
    again = rationalize(location, RationalizeConfig(failed), rerun)  # the catalog holds every hinted trace
    assert rerun.requests == [] and (again.sent, again.snapshot, again.scored_first) == (0, None, 0)
    assert (again.prompts_asked, again.traces, again.verified, again.leaked) == (3, 3, result.verified, result.leaked)


def test_hinted_yaml_keeps_verified_clean_hinted_traces_and_drops_wrong_and_leaking_ones(location, failed):
    result = rationalize(location, RationalizeConfig(failed), HintTeacher())
    assert (result.verified, result.leaked, result.usable) == (2, 1, 1)
    score(location, ScoreConfig(failed, ("correctness", "exact_dup", "hint_leak")))
    policy, _ = Policy.load(POLICY)
    with catalog.Catalog(location) as cat:
        decisions = {d["trace_id"]: d for d in decide(cat.con, failed, policy).to_pylist()}
    by_question = {q: decisions[t["trace_id"]] for q, t in _hinted_traces(location).items()}
    clean, leak, wrong = (by_question[QUESTION_LIST[i]] for i in HINTED)
    assert (clean["keep"], clean["rule"], clean["reason"]) == (
        True,
        "hinted_verified",
        "hinted: answer, verified, no leak",
    )
    assert (leak["keep"], leak["rule"]) == (False, "hint_leak") and leak["reason"].startswith("phrase: ")
    assert "reference says" in leak["reason"]
    assert (wrong["keep"], wrong["rule"], wrong["reason"]) == (False, "hinted_wrong", "hinted, mismatch")
    kept_plain = [d for d in decisions.values() if d["keep"] and d["rule"] == "default"]
    assert len(kept_plain) == 1  # q3's own right answer; every other plain trace was wrong
    assert sum(d["keep"] for d in decisions.values()) == 2
    # ``hinted`` in a rule of its own: drop every hinted trace; NULL (plain traces) matches no rule.
    no_hints = Policy.from_dict({"name": "no-hints", "rules": [{"name": "hinted", "when": "hinted", "action": "drop"}]})
    with catalog.Catalog(location) as cat:
        dropped = {d["trace_id"]: d["rule"] for d in decide(cat.con, failed, no_hints).to_pylist() if not d["keep"]}
    assert dropped == {t["trace_id"]: "hinted" for t in _hinted_traces(location).values()} and len(dropped) == 3


def test_a_round_looks_only_at_its_own_traces_and_tags_the_hinted_ones(location, failed):
    with catalog.Catalog(location) as cat:
        ids = cat.arrow("SELECT prompt_id FROM prompts ORDER BY prompt_id").column(0).to_pylist()
    none = rationalize(location, RationalizeConfig(failed, round=2), HintTeacher())  # no round-2 traces yet
    assert none.prompts_asked == 0 and "no judged teacher traces" in describe(none)
    # Another seed: without a note a round's requests are the plain ones, already stored.
    build(location, BuildConfig(failed, samples=1, seed=1), HintTeacher(), Shaping("round=2", round=2))
    only = ids[:3]
    teacher = HintTeacher()
    result = rationalize(location, RationalizeConfig(failed, prompt_ids=only, round=2), teacher)
    assert {r.prompt_id for r in teacher.requests} <= set(only) and result.prompts_asked == len(teacher.requests)
    assert result.scored_first == len(only) and result.prompts_asked >= 1  # the round-2 traces of these prompts
    assert result.prompts_failed + result.prompts_solved + result.skipped_no_reference == len(only)
    assert {t["round"] for t in _hinted_traces(location).values()} == {2}


def test_the_solution_hint_gives_the_whole_reference(location, failed):
    teacher = HintTeacher()
    rationalize(location, RationalizeConfig(failed, hint="solution", limit=1), teacher)
    [request] = teacher.requests
    question = next(q for q in QUESTION_LIST if q in request.messages[-1]["content"])
    assert f"So {ANSWERS[question]} in all.\n#### {ANSWERS[question]}" in request.messages[-1]["content"]
    [trace] = _hinted_traces(location).values()
    assert orjson.loads(trace["lineage"])["hint"] == "solution" and "So " not in trace["lineage"]


def test_skips_are_counted_why():
    rows = [
        {"prompt_id": "a", "task": "math", "reference": "#### 4", "traces": 2, "wrong": 2, "correct": 0},
        {"prompt_id": "b", "task": "code", "reference": '{"test": "assert f()"}', "traces": 1, "wrong": 1, "correct": 0},
        {"prompt_id": "c", "task": "math", "reference": None, "traces": 1, "wrong": 0, "correct": 0},
        {"prompt_id": "d", "task": "math", "reference": "#### 5", "traces": 2, "wrong": 1, "correct": 1},
        {"prompt_id": "e", "task": "math", "reference": "see the book", "traces": 1, "wrong": 0, "correct": 0},
    ]  # fmt: skip
    asked, counts = _hints(rows, RationalizeConfig("toy"))
    assert [(r["prompt_id"], r["answer"]) for r in asked] == [("a", "4")] and "code" not in FINAL_ANSWERS
    assert counts == {"prompts_failed": 2, "prompts_solved": 1, "skipped_no_reference": 1, "skipped_no_answer": 1}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"hint": "everything"}, "hint must be one of answer, solution"),
        ({"samples": 0}, "samples must be at least 1"),
        ({"limit": 0}, "limit must be at least 1"),
        ({"round": 0}, "round must be at least 1"),
        ({"build": BuildConfig("other")}, "build settings are for dataset 'other'"),
        ({"build": BuildConfig("toy", policy="student")}, "policy must be 'teacher'"),
        ({"build": BuildConfig("toy", limit=3)}, "give prompt_ids and limit to it"),
        ({"build": BuildConfig("toy", strategy="fewshot")}, "fewshot strategy cannot be hinted"),
    ],
)
def test_config_validation(values, message):
    with pytest.raises(TracebankError, match=message):
        RationalizeConfig("toy", **values)


def test_cli_asks_a_real_http_teacher_and_refuses_a_bad_hint(location, failed, tmp_path):
    home = str(location.home)
    with StubServer(StubOptions()) as stub:
        done = cli("rationalize", failed, "--backend", "openai", "--model", "stub", "--base-url", stub.base_url,
                   "--max-new-tokens", "32", "--limit", "2", catalog=home)  # fmt: skip
        assert stub.stats()["received"] == 2
    assert "asked 2 with hints (2 requests sent): 2 hinted traces" in " ".join(done.stdout.split())
    assert_one_line_error(cli("rationalize", failed, "--hint", "everything", catalog=home, check=False),
                          "hint must be one of answer, solution")  # fmt: skip
