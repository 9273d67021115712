"""Closed-loop rounds: the student's failures, and only those, go back to the teacher, tagged with their round."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from tests import ROOT
from tests.conftest import write_jsonl
from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog
from tracebank.builders.base import Response
from tracebank.builders.runner import BuildConfig, build
from tracebank.cli.main import app
from tracebank.cli.recipes import load_recipe
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.data_cards.render import render_card
from tracebank.errors import TracebankError
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.loop.rounds import (
    ANSWER_CHARS,
    NO_ANSWER_NOTE,
    ROUND_SEED_STRIDE,
    RoundConfig,
    feedback_note,
    round_history,
    run_round,
)
from tracebank.loop.steps import LoopConfig, run_loop
from tracebank.models import DEFAULT_MODEL
from tracebank.train.evaluate import EvalConfig

RECIPES = ROOT / "recipes"
SOLVED = set(sorted(QUESTIONS)[:2])  # the questions the fake student answers right


def question_of(request) -> str:
    return next(q for q in QUESTIONS if q in request.messages[-1]["content"])


class Student:
    """Answers SOLVED right and the rest one too high; records every question it is asked."""

    backend = "fake"

    def __init__(self, solved: set[str] = SOLVED):
        self.solved, self.asked = solved, []

    def generate(self, requests):
        for request in requests:
            question = question_of(request)
            self.asked.append(question)
            answer = int(QUESTIONS[question]) + (0 if question in self.solved else 1)
            yield Response(request.key, f"I think.\n#### {answer}", "stop", 10, 5, 0.0)


class RecordingTeacher(FakeTeacher):
    """The fake teacher, keeping every request it was sent."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.requests = []

    def generate(self, requests):
        for request in requests:
            self.requests.append(request)
            yield from super().generate([request])


@pytest.fixture
def pool(location, tmp_path) -> str:
    """The six fake questions as a dataset's train pool, with '#### N' references."""
    rows = [{"question": q, "answer": f"Work.\n#### {a}"} for q, a in QUESTIONS.items()]
    path = write_jsonl(tmp_path / "pool.jsonl", rows)
    import_data(location, ImportConfig(str(path), "loop", ColumnMap.parse("prompt=question,reference=answer"),
                                       split_hint="train"))  # fmt: skip
    return "loop"


def prompt_ids(location, questions) -> dict[str, str]:
    with catalog.Catalog(location) as cat:
        rows = cat.arrow("SELECT prompt_id, messages[-1].content AS question FROM prompts").to_pylist()
    return {r["question"]: r["prompt_id"] for r in rows if r["question"] in questions}


def test_only_failed_prompts_go_back_with_feedback_and_tags(location, pool):
    teacher, student = RecordingTeacher(), Student()
    result = run_round(location, RoundConfig(pool, student="fake-student", build={"samples": 2}), teacher, student)

    failed = set(QUESTIONS) - SOLVED
    assert (result.round, result.prompts, result.correct, result.prompts_failed) == (1, 6, 2, 4)
    assert result.accuracy == pytest.approx(2 / 6) and result.ci_low < result.accuracy < result.ci_high
    assert {question_of(r) for r in teacher.requests} == failed and len(teacher.requests) == 2 * len(failed)
    for request in teacher.requests:
        question = question_of(request)
        note = request.messages[-1]["content"].split(question, 1)[1]
        wrong = str(int(QUESTIONS[question]) + 1)
        assert note.endswith(feedback_note(wrong)) and f"with: {wrong}\n" in note
        assert QUESTIONS[question] not in note.replace(wrong, "")  # the reference's answer is never given
        assert request.params.seed in (ROUND_SEED_STRIDE, ROUND_SEED_STRIDE + 1)

    with catalog.Catalog(location) as cat:
        traces = cat.arrow("SELECT prompt_id, strategy, round, hinted, lineage FROM traces").to_pylist()
        evals = cat.arrow("SELECT DISTINCT eval_run, round, student FROM evals").to_pylist()
    assert evals == [{"eval_run": result.eval_run, "round": 1, "student": "fake-student"}]
    assert {t["prompt_id"] for t in traces} == set(prompt_ids(location, failed).values())
    for trace in traces:
        assert (trace["strategy"], trace["round"], trace["hinted"]) == ("round=1+feedback", 1, False)
        assert orjson.loads(trace["lineage"]) == {
            "student": "fake-student",
            "eval_run": result.eval_run,
            "feedback": True,
        }
    # FakeTeacher answers samples 0 right and 1 wrong: half of the new traces verify
    assert (result.traces_new, result.traces_correct, result.traces_hinted) == (8, 4, 0)
    with catalog.Catalog(location) as cat:
        (stored,) = round_history(cat, pool)
    assert {k: stored[k] for k in ("round", "prompts_failed", "traces_new", "traces_correct", "eval_run")} == {
        "round": 1, "prompts_failed": 4, "traces_new": 8, "traces_correct": 4, "eval_run": result.eval_run}  # fmt: skip


def test_feedback_quotes_a_clipped_answer_or_says_there_was_none():
    assert feedback_note(None) == feedback_note("") == NO_ANSWER_NOTE
    note = feedback_note("9" * 1000)
    assert "9" * ANSWER_CHARS in note and "9" * (ANSWER_CHARS + 1) not in note


def test_without_feedback_the_teacher_sees_the_plain_prompt(location, pool):
    teacher = RecordingTeacher()
    cfg = RoundConfig(pool, student="s", feedback=False, build={"samples": 1})
    run_round(location, cfg, teacher, Student())
    assert teacher.requests and all("student" not in r.messages[-1]["content"] for r in teacher.requests)
    with catalog.Catalog(location) as cat:
        strategies = cat.arrow("SELECT DISTINCT strategy, lineage FROM traces").to_pylist()
    assert {s["strategy"] for s in strategies} == {"round=1"}
    assert all(orjson.loads(s["lineage"])["feedback"] is False for s in strategies)


def test_a_rerun_sends_nothing_and_the_next_round_samples_afresh(location, pool):
    cfg = RoundConfig(pool, student="s", build={"samples": 1})
    first = run_round(location, cfg, FakeTeacher(), Student())
    teacher, student = FakeTeacher(), Student()
    again = run_round(location, RoundConfig(pool, student="s", round=1, build={"samples": 1}), teacher, student)
    assert teacher.sent == [] and student.asked == []  # the stored eval and traces are reused
    assert (again.eval_run, again.traces_new, again.run_id) == (first.eval_run, first.traces_new, None)

    teacher = FakeTeacher()
    second = run_round(location, cfg, teacher, Student())  # round=None: the one after the last completed
    assert second.round == 2 and len(teacher.sent) == second.prompts_failed == 4
    with catalog.Catalog(location) as cat:
        per_round = dict(cat.con.execute("SELECT round, count(*) FROM traces GROUP BY round").fetchall())
        assert [h["round"] for h in round_history(cat, pool)] == [1, 2]
        assert cat.scalar("SELECT count(*) FROM runs WHERE stage = 'round'") == 2
    assert per_round == {1: 4, 2: 4}


def test_a_student_that_solves_everything_gets_no_new_traces(location, pool):
    teacher = FakeTeacher()
    result = run_round(location, RoundConfig(pool, student="s"), teacher, Student(solved=set(QUESTIONS)))
    assert (result.accuracy, result.prompts_failed, result.traces_new, teacher.sent) == (1.0, 0, 0, [])
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM traces") == 0
        assert round_history(cat, pool)[0]["accuracy"] == 1.0


def test_hints_rationalize_the_failed_prompts_the_teacher_failed_too(location, pool):
    teacher = RecordingTeacher(text="No idea.")  # every round trace fails verification
    cfg = RoundConfig(pool, student="s", hints=True, build={"samples": 1})
    result = run_round(location, cfg, teacher, Student())
    assert (result.prompts_failed, result.traces_new, result.traces_correct, result.traces_hinted) == (4, 4, 0, 4)
    hinted = [r for r in teacher.requests if r.strategy.endswith("hint")]
    assert len(hinted) == 4 and all(QUESTIONS[question_of(r)] in r.messages[-1]["content"] for r in hinted)
    with catalog.Catalog(location) as cat:
        tags = cat.con.execute("SELECT DISTINCT round, hinted FROM traces ORDER BY ALL").fetchall()
    assert tags == [(1, False), (1, True)]


def test_the_pool_is_a_split_hint_and_limit(location, pool):
    student = Student()
    result = run_round(location, RoundConfig(pool, student="s", limit=3), FakeTeacher(), student)
    assert result.prompts == len(student.asked) == 3
    with pytest.raises(TracebankError, match="no prompts in split 'test'"):
        run_round(location, RoundConfig(pool, student="s", split_hint="test"), FakeTeacher(), Student())


def test_policies_can_select_by_round(location, pool):
    build(location, BuildConfig(pool, samples=1), FakeTeacher())  # traces from before any round
    run_round(location, RoundConfig(pool, student="s", build={"samples": 2}), FakeTeacher(), Student())
    rules = [{"name": "old", "when": "round IS NULL OR round < 1 OR hinted", "action": "drop"},
             {"name": "wrong", "when": "NOT coalesce(correctness.passed, false)", "action": "drop"}]  # fmt: skip
    policy = {"name": "rounds", "rules": rules, "splits": {"train": 1.0}}
    result = releases.curate(location, pool, Policy.from_dict(policy), yaml.safe_dump(policy), "round 1")
    assert {(c["rule"], c["n"]) for c in result.counts} == {("old", 6), ("default", 4), ("wrong", 4)}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"round": 0}, "round must be at least 1"),
        ({"limit": 0}, "limit must be at least 1"),
        ({"build": {"policy": "student"}}, "unknown key 'policy'"),
        ({"build": {"prompt_ids": ["x"]}}, "unknown key 'prompt_ids'"),
        ({"build": {"samples": 0}}, "samples must be at least 1"),
        ({"build": {"backend": "nope"}}, "unknown backend"),
        ({"build": [1]}, "build must map teacher settings"),
        ({"filters": ("exact_dup",)}, "keep 'correctness'"),
        ({"filters": ("correctness", "nope")}, "unknown filter 'nope'"),
        ({"eval_max_new_tokens": 0}, "max_new_tokens must be at least 1"),
        ({"hints": True, "build": {"strategy": "fewshot"}}, "fewshot strategy cannot be hinted"),
        ({"dataset": ""}, "needs a dataset"),
    ],
)
def test_config_validation(settings, message):
    with pytest.raises(TracebankError, match=message):
        RoundConfig(**{"dataset": "d", **settings})


def test_eval_round_must_not_be_negative():
    with pytest.raises(TracebankError, match="round must be at least 0"):
        EvalConfig("s", dataset="d", split_hint="train", round=-1)


def test_the_cli_refuses_bad_input_in_one_line(location, pool):
    result = CliRunner().invoke(app, ["round", pool, "--round", "0", "--catalog", str(location.home)])
    assert result.exit_code == 1 and "round must be at least 1" in str(result.exception)
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM runs WHERE stage IN ('round', 'eval')") == 0


def test_the_recipe_and_its_loop_step_validate_before_running(tmp_path):
    dataset, steps = load_recipe(RECIPES / "closed_loop.yaml")
    assert dataset == "gsm8k-loop" and [s.kind for s in steps] == ["import", "import", "score", "loop", "card"]
    policy = {"name": "p", "rules": [], "splits": {"train": 1.0}}
    bad = [
        ({"rounds": 2}, "needs policy"),
        ({"policy": policy, "rounds": 0}, "rounds must be at least 1"),
        ({"policy": policy, "repeat": 1}, "unknown key 'repeat'"),
        ({"policy": policy, "round": {"student": "s"}}, "unknown key 'student'"),
        ({"policy": policy, "train_sft": {"release": "x@v1"}}, "unknown key 'release'"),
        ({"policy": policy, "train_sft": {"max_steps": 0}}, "max_steps must be at least 1"),
        ({"policy": policy, "eval": {"limit": 2}}, "needs split_hint"),
        ({"policy": policy, "round": {"build": {"samples": 0}}}, "samples must be at least 1"),
    ]
    for number, (options, message) in enumerate(bad):
        path = tmp_path / f"r{number}.yaml"
        path.write_text(yaml.safe_dump({"dataset": "d", "steps": [{"loop": options}]}))
        with pytest.raises(TracebankError, match=message):
            load_recipe(path)


@pytest.mark.slow  # the embedded student answers, trains twice and is evaluated five times: minutes on 2 cores
def test_two_rounds_end_to_end_with_the_embedded_student(location, tmp_path):
    """The proof: 2 rounds (eval → failed prompts to the teacher → score → curate → SFT → held-out eval)."""
    questions = sorted(QUESTIONS)
    train = [{"question": q, "answer": f"Work.\n#### {QUESTIONS[q]}"} for q in questions[:3]]
    test = [{"question": q, "answer": f"#### {QUESTIONS[q]}"} for q in questions[3:5]]
    column_map = ColumnMap.parse("prompt=question,reference=answer,response=answer")  # seed traces: the solutions
    import_data(
        location, ImportConfig(str(write_jsonl(tmp_path / "t.jsonl", train)), "e2e", column_map, split_hint="train")
    )
    import_data(location, ImportConfig(str(write_jsonl(tmp_path / "h.jsonl", test)), "e2e",
                                       ColumnMap.parse("prompt=question,reference=answer"), split_hint="test"))  # fmt: skip
    policy = {"name": "correct", "rules": [{"name": "wrong", "when": "NOT coalesce(correctness.passed, false)",
                                            "action": "drop"}], "splits": {"train": 1.0}}  # fmt: skip
    round_cfg = RoundConfig("e2e", eval_max_new_tokens=8, eval_batch_size=4, build={"samples": 1})
    cfg = LoopConfig(round_cfg, Policy.from_dict(policy), yaml.safe_dump(policy), rounds=2,
                     train={"max_steps": 1, "batch_size": 2, "max_length": 128},
                     eval={"split_hint": "test", "max_new_tokens": 8, "batch_size": 4})  # fmt: skip
    result = run_loop(location, cfg, teacher=FakeTeacher(always_correct=True))

    assert [r.round for r in result.rounds] == [1, 2] and [h.round for h in result.held_out] == [0, 1, 2]
    trained = result.students[0]
    assert [r.student for r in result.rounds] == [DEFAULT_MODEL, trained] and Path(trained).is_dir()
    with catalog.Catalog(location) as cat:
        evals = cat.con.execute("SELECT round, split, count(*), any_value(student) FROM evals GROUP BY ALL").fetchall()
        assert sorted(evals) == [(0, "test", 2, DEFAULT_MODEL), (1, "test", 2, trained), (1, "train", 3, DEFAULT_MODEL),
                                 (2, "test", 2, result.students[1]), (2, "train", 3, trained)]  # fmt: skip
        assert cat.scalar("SELECT count(*) FROM runs WHERE stage = 'round'") == 2
        lineage = cat.con.execute("SELECT DISTINCT round, lineage FROM traces WHERE round IS NOT NULL").fetchall()
        # the numbers the card must show, straight from evals, traces and scores
        expected = cat.con.execute("""
            SELECT e.round, count(*) FILTER (WHERE e.correct IS NOT NULL), count(*) FILTER (WHERE e.correct = 1),
                   count(*) FILTER (WHERE e.correct = 0),
                   (SELECT count(*) FROM traces t WHERE t.round = e.round),
                   (SELECT count(*) FROM traces t JOIN scores s ON s.trace_id = t.trace_id
                    WHERE t.round = e.round AND s.filter = 'correctness' AND s.metric = 'correct' AND s.passed)
            FROM evals e WHERE e.split = 'train' GROUP BY e.round ORDER BY e.round""").fetchall()
    by_round = {r.round: r for r in result.rounds}
    for number, student in lineage:
        assert orjson.loads(student)["student"] == by_round[number].student
        assert orjson.loads(student)["eval_run"] == by_round[number].eval_run

    card = render_card(location, ReleaseRef.parse("e2e@latest"), tmp_path / "cards").read_text()
    section = card.split("## Closed-loop rounds", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2
    for row, (number, verified, correct, failed, new, new_correct) in zip(rows, expected, strict=True):
        cells = [cell.strip() for cell in row]
        assert (int(cells[0]), int(cells[2]), int(cells[4]), int(cells[5]), int(cells[6])) == (
            number, verified, failed, new, new_correct)  # fmt: skip
        assert cells[3].startswith(f"{100 * correct / verified:.1f}%")
