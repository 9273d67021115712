"""PromptMix: boundary parents, the three rewrites on real GSM8K questions, one commit, solving and curation."""

import random
import re
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from tests import ROOT
from tests.conftest import tree_fingerprint, write_jsonl
from tracebank import benchmarks, catalog, hashing
from tracebank.builders.base import Response
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate.policy import Policy
from tracebank.curate.releases import curate
from tracebank.errors import TracebankError
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.loop.promptmix import NUMBER, AugmentConfig, Parent, augment, change_numbers, generate
from tracebank.tasks.math import INSTRUCTION, reference_answer
from tracebank.train.evaluate import EvalConfig, evaluate

GSM8K_TRAIN = Path("/work/shared/data/gsm8k/train.jsonl")
pytestmark = pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason="needs GSM8K train at /work/shared/data")
POLICY = ROOT / "recipes" / "policies" / "promptmix.yaml"
ROWS = 24  # the first 24 train questions: 18 hinted train, 6 hinted test


def gsm8k(limit: int) -> list[dict]:
    with GSM8K_TRAIN.open("rb") as stream:
        return [orjson.loads(line) for _, line in zip(range(limit), stream, strict=False)]


def question_of(request) -> str:
    return request.messages[-1]["content"].removesuffix(f"\n\n{INSTRUCTION}")


def kind(question: str) -> int:
    """0: the teacher always agrees with itself; 1: two of three samples agree; 2: every sample differs."""
    return int(hashing.digest(question)[-1], 16) % 3


class BoundaryTeacher:
    """Answers from ``answers`` (question -> number) when given; otherwise as :func:`kind` says."""

    backend = "fake"

    def __init__(self, answers: dict[str, str] | None = None):
        self.answers = answers or {}
        self.sent = 0

    def generate(self, requests):
        for request in requests:
            self.sent += 1
            question, i = question_of(request), request.sample_idx
            answer = self.answers.get(question) or {0: "7", 1: "8" if i < 2 else "9", 2: str(100 + i)}[kind(question)]
            yield Response(request.key, f"Reasoning about it.\n#### {answer}", "stop", 20, 10, 0.0)


@pytest.fixture
def gsm(location, tmp_path) -> str:
    rows = [{**row, "id": f"g{i}", "split": "train" if i < 18 else "test"} for i, row in enumerate(gsm8k(ROWS))]
    write_jsonl(tmp_path / "gsm.jsonl", rows)
    import_data(location, ImportConfig(str(tmp_path / "gsm.jsonl"), "gsm", ColumnMap.parse(
        "prompt=question,reference=answer,id=id,split=split")))  # fmt: skip
    return "gsm"


def parents(limit: int = 12) -> list[Parent]:
    return [Parent(f"p{i:02d}", [{"role": "user", "content": r["question"]}], r["answer"], "train")
            for i, r in enumerate(gsm8k(limit))]  # fmt: skip


def stored(location, sql: str, params=None) -> list[dict]:
    with catalog.Catalog(location) as cat:
        return cat.sql(sql, params).to_dicts()


def masked(text: str) -> str:
    return NUMBER.sub("#", text)


# ---- the rewrites, on real GSM8K questions ------------------------------------------------------


def test_numbers_change_only_free_standing_numbers_and_keep_integers_and_order():
    changed = 0
    for i, row in enumerate(gsm8k(80)):
        result = change_numbers(row["question"], random.Random(i))
        if result is None:
            continue
        changed += 1
        question, changes = result
        assert question != row["question"] and masked(question) == masked(row["question"])  # the words are intact
        olds, news = (
            (Fraction(o.replace(",", "")) for o, _ in changes),
            (Fraction(n.replace(",", "")) for _, n in changes),
        )
        pairs = list(zip(olds, news, strict=True))
        for old_text, new_text in changes:
            assert ("." in old_text) == ("." in new_text)  # integers stay integers
        for (a, a2), (b, b2) in ((x, y) for x in pairs for y in pairs):
            assert (a < b) == (a2 < b2) and (a == b) == (a2 == b2)  # order kept, one number changes one way
            if a.denominator == b.denominator == 1 and a > 1 and b % a == 0:
                assert b2 % a2 == 0  # "12 per box, 60 eggs" stays divisible
        for old, new in pairs:
            assert old / 2 <= new <= old * 2  # magnitudes stay plausible
    assert changed >= 70  # nearly every GSM8K question has numbers to change
    theater = next(r["question"] for r in gsm8k(8000) if "3D tickets" in r["question"])
    question, _ = change_numbers(theater, random.Random(1))
    assert question.count("3D") == theater.count("3D") == 2  # a number inside a word is not a number
    question, changes = change_numbers("In 2019, at 3:30, Ann ate 3/4 of 12 pies and paid $2,000.", random.Random(0))
    assert [old for old, _ in changes] == ["12", "2,000"]  # a year, a time and a fraction stay


def test_combine_chains_two_parents_and_its_reference_is_the_sum():
    pool = parents()
    children, skipped = generate(pool, AugmentConfig("d", ("combine",), count=6))
    assert skipped == 0 and len(children) == 6
    for child in children:
        first, second = child.parents
        assert first.prompt_id != second.prompt_id and first.question in child.question
        assert second.question in child.question and "plus the answer to Problem 2" in child.question
        total = sum(Fraction(reference_answer(p.reference)[0]) for p in child.parents)
        assert reference_answer(child.reference)[0] == str(total)


def test_distractor_adds_one_irrelevant_sentence_and_keeps_the_reference():
    for child in generate(parents(), AugmentConfig("d", ("distractor",), count=8))[0]:
        (parent,) = child.parents
        sentence = child.detail["inserted"]
        assert child.reference == parent.reference
        assert child.question.replace(f"{sentence} ", "", 1) == parent.question  # otherwise intact
        assert re.search(r"\d", sentence) and sentence.split("'")[0].split()[-1] not in parent.question
        assert child.question.endswith(parent.question.strip().split(". ")[-1])  # the question stays last


def test_generation_is_deterministic_and_a_larger_count_only_adds():
    pool = parents()
    six = generate(pool, AugmentConfig("d", count=6, seed=3))[0]
    assert six == generate(pool, AugmentConfig("d", count=6, seed=3))[0]
    assert generate(pool, AugmentConfig("d", count=3, seed=3))[0] == six[:3]
    assert [c.question for c in generate(pool, AugmentConfig("d", count=6, seed=4))[0]] != [c.question for c in six]
    assert [c.method for c in six] == ["numbers", "combine", "distractor"] * 2


# ---- augment on a catalog -----------------------------------------------------------------------


def test_new_prompts_record_origin_and_parents_in_one_commit_and_a_rerun_adds_nothing(location, gsm):
    cfg = AugmentConfig(gsm, count=9, selection="sample")
    first = augment(location, cfg)
    assert first.selection == "sample" and first.prompts_new == first.generated == 9 and first.snapshot is not None
    assert first.held_out_skipped == 6  # the test-hinted prompts
    rows = stored(location, "SELECT * FROM prompts WHERE origin IS NOT NULL ORDER BY prompt_id")
    hints = {r["prompt_id"]: r["split_hint"] for r in stored(location, "SELECT * FROM prompts WHERE origin IS NULL")}
    assert sorted(r["prompt_id"] for r in rows) == list(first.prompt_ids)
    for row in rows:
        method = row["origin"].removeprefix("promptmix:")
        assert len(row["parents"]) == (2 if method == "combine" else 1)
        assert all(hints[p] == "train" for p in row["parents"]) and row["split_hint"] == "train"
        assert row["prompt_id"] == hashing.prompt_id(gsm, row["messages"])
        assert (row["reference"] is None) == (method == "numbers")
    snapshots = stored(location, "SELECT count(*) AS n FROM lake.snapshots()")[0]["n"]
    again = augment(location, cfg)
    assert (again.prompts_new, again.prompts_existing, again.snapshot) == (0, 9, None)
    assert stored(location, "SELECT count(*) AS n FROM lake.snapshots()")[0]["n"] == snapshots


def _eval(location, dataset, hint, right: set[str]):
    """An eval run on the prompts hinted ``hint``; questions in ``right`` answered correctly, the rest wrong."""
    prompts = stored(location, "SELECT prompt_id, messages, reference FROM prompts WHERE split_hint = ?", [hint])
    answers = {p["messages"][-1]["content"]: reference_answer(p["reference"])[0] for p in prompts}
    answers = {q: (a if q in right else str(int(a) + 1)) for q, a in answers.items()}
    result = evaluate(location, EvalConfig("student", dataset=dataset, split_hint=hint), BoundaryTeacher(answers))
    failed = {p["prompt_id"] for p in prompts if p["messages"][-1]["content"] not in right}
    return result.eval_run, failed


def test_boundary_selection_picks_the_prompts_the_student_failed(location, gsm):
    right = {r["question"] for r in gsm8k(ROWS)[:12]}
    run, failed = _eval(location, gsm, "train", right)
    result = augment(location, AugmentConfig(gsm, count=8))
    assert result.selection == f"eval:{run}" and result.parents_available == len(failed) == 6
    parents_used = {
        p for r in stored(location, "SELECT parents FROM prompts WHERE origin IS NOT NULL") for p in r["parents"]
    }
    assert parents_used and parents_used <= failed


def test_held_out_prompts_are_never_parents(location, gsm):
    run, _ = _eval(location, gsm, "test", set())
    before = tree_fingerprint(location.home)
    with pytest.raises(TracebankError, match="held-out"):
        augment(location, AugmentConfig(gsm, count=4, from_eval=run))
    assert tree_fingerprint(location.home) == before  # nothing written
    result = augment(location, AugmentConfig(gsm, count=6))  # auto: the eval cannot be used, so it says why
    assert result.selection == "sample" and "held-out" in result.note
    test_ids = {r["prompt_id"] for r in stored(location, "SELECT prompt_id FROM prompts WHERE split_hint = 'test'")}
    children = stored(location, "SELECT parents, split_hint FROM prompts WHERE origin IS NOT NULL")
    assert children and all(not set(c["parents"]) & test_ids and c["split_hint"] == "train" for c in children)


def test_prompts_a_release_put_in_a_held_out_split_are_never_parents(location, gsm):
    build(location, BuildConfig(gsm, samples=1, split_hint="train"), BoundaryTeacher())
    policy = Policy.from_dict({"name": "halves", "rules": [], "splits": {"train": 0.5, "test": 0.5}})
    release = curate(location, gsm, policy, "", "by hash")
    released_test = {r["prompt_id"] for r in stored(location, "SELECT DISTINCT prompt_id FROM decisions "
                                                              "WHERE version = ? AND split = 'test'", [release.version])}  # fmt: skip
    result = augment(location, AugmentConfig(gsm, ("distractor",), count=8, selection="sample"))
    used = {p for r in stored(location, "SELECT parents FROM prompts WHERE origin IS NOT NULL") for p in r["parents"]}
    assert released_test and used and not used & released_test
    assert result.held_out_skipped == 6 + len(released_test)


@pytest.mark.parametrize(
    "selection, from_eval, message",
    [
        ("eval", None, "has no eval run"),
        ("auto", "eval-nope", "no eval run 'eval-nope' of dataset 'gsm'"),
        ("disagreement", None, "teacher traces disagree"),
    ],
)
def test_an_explicit_selection_without_its_evidence_is_refused(location, gsm, selection, from_eval, message):
    before = tree_fingerprint(location.home)
    with pytest.raises(TracebankError, match=message):
        augment(location, AugmentConfig(gsm, count=2, selection=selection, from_eval=from_eval))
    assert tree_fingerprint(location.home) == before


def test_teacher_disagreement_is_the_boundary_without_an_eval(location, gsm):
    build(location, BuildConfig(gsm, samples=3, split_hint="train"), BoundaryTeacher())
    result = augment(location, AugmentConfig(gsm, ("distractor",), count=6))
    disagree = {r["prompt_id"] for r in stored(location, "SELECT * FROM prompts WHERE split_hint = 'train' AND origin IS NULL")
                if kind(r["messages"][-1]["content"]) != 0}  # fmt: skip
    assert result.selection == "disagreement" and result.parents_available == len(disagree)
    used = {p for r in stored(location, "SELECT parents FROM prompts WHERE origin IS NOT NULL") for p in r["parents"]}
    assert used and used <= disagree


def test_solved_prompts_are_curated_by_majority_reference_and_contamination(location, gsm, tmp_path):
    """Numbers children (no reference) keep only traces agreeing with a clear majority; distractor children keep
    verified-correct traces, unless the prompt copies a registered benchmark item (decontam checks prompts too)."""
    cfg = AugmentConfig(gsm, ("numbers", "distractor"), count=12, selection="sample")
    made = augment(location, cfg)
    children = stored(location, "SELECT * FROM prompts WHERE origin IS NOT NULL")
    answers = {c["messages"][-1]["content"]: reference_answer(c["reference"])[0] for c in children if c["reference"]}
    copied = next(c["parents"][0] for c in children if c["origin"] == "promptmix:distractor")
    item = stored(location, "SELECT messages FROM prompts WHERE prompt_id = ?", [copied])[0]["messages"][-1]["content"]
    write_jsonl(tmp_path / "bench.jsonl", [{"id": "leak", "question": item}, {"id": "other", "question": "x y z"}])
    benchmarks.register(location, "private-bench", str(tmp_path / "bench.jsonl"), "text=question,id=id")
    teacher, solved = BoundaryTeacher(answers), replace(cfg, solve=BuildConfig(gsm, samples=3))
    result = augment(location, solved, teacher)
    assert result.prompts_new == 0 and result.prompt_ids == made.prompt_ids  # the same prompts, now solved
    assert result.build.traces_new == teacher.sent == 3 * len(children)
    policy, text = Policy.load(POLICY)
    release = curate(location, gsm, policy, text, "promptmix")
    rows = stored(location, """
        SELECT p.prompt_id, p.origin, p.parents, p.messages, d.keep, d.rule, t.answer FROM decisions d
        JOIN traces t USING (trace_id) JOIN prompts p ON p.prompt_id = d.prompt_id
        WHERE d.version = ? AND p.origin IS NOT NULL""", [release.version])  # fmt: skip
    kept: dict[str, list[str]] = {}
    for row in rows:
        kept.setdefault(row["prompt_id"], []).extend([row["answer"]] if row["keep"] else [])
        if row["origin"] == "promptmix:distractor":
            expected = "contaminated" if copied in row["parents"] else "verified"
            assert row["rule"] == expected and row["keep"] == (expected == "verified")
        else:
            assert row["rule"] == ("default" if row["keep"] else "no_clear_majority")
    numbers = {r["prompt_id"]: kind(r["messages"][-1]["content"]) for r in rows if r["origin"] == "promptmix:numbers"}
    assert set(numbers.values()) == {0, 1, 2}  # consistent, a 2-of-3 majority and no majority all occur
    for prompt_id, teacher_kind in numbers.items():
        assert sorted(kept[prompt_id]) == {0: ["7", "7", "7"], 1: ["8", "8"], 2: []}[teacher_kind]
    flagged = stored(location, "SELECT DISTINCT item_id FROM contamination WHERE benchmark = 'private-bench'")
    assert flagged == [{"item_id": "leak"}]
    assert augment(location, solved, teacher).build.sent == 0  # a rerun: same prompts, traces already built


@pytest.mark.slow  # loads the embedded model: 2 short generations, seconds idle, minutes on a loaded 2-core box
def test_one_tiny_solve_with_the_embedded_model(location, gsm):
    from tracebank.models import DEFAULT_MODEL

    solve = BuildConfig(gsm, samples=2, max_new_tokens=16)  # two 16-token answers
    cfg = AugmentConfig(gsm, ("distractor",), count=1, selection="sample", solve=solve,
                        score_filters=("correctness", "self_consistency"))  # fmt: skip
    result = augment(location, cfg)
    traces = stored(location, "SELECT t.prompt_id, t.model, t.backend, s.filter FROM traces t JOIN scores s "
                              "USING (trace_id) WHERE s.metric = 'passed' OR s.metric IN ('correct', 'agrees')")  # fmt: skip
    assert result.build.traces_new == 2 and {t["prompt_id"] for t in traces} == set(result.prompt_ids)
    assert {(t["model"], t["backend"]) for t in traces} == {(DEFAULT_MODEL, "transformers")}
    assert {t["filter"] for t in traces} == {"correctness", "self_consistency"}


# ---- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": ("numbers", "paraphrase")}, "choose from"),
        ({"methods": ()}, "choose from"),
        ({"methods": ("numbers", "numbers")}, "each once"),
        ({"count": 0}, "count must be at least 1"),
        ({"count": 2.5}, "whole number"),
        ({"selection": "random"}, "selection 'random'"),
        ({"selection": "sample", "from_eval": "eval-x"}, "cannot go with selection"),
        ({"solve": BuildConfig("other")}, "same dataset"),
        ({"solve": BuildConfig("d", prompt_ids=("a",))}, "without prompt_ids"),
        ({"solve": BuildConfig("d", samples=1)}, "at least 2"),
        ({"solve": BuildConfig("d"), "score_filters": ("vibes",)}, "unknown filter"),
    ],
)
def test_augment_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        AugmentConfig("d", **kwargs)


def test_non_math_prompts_are_refused_and_nothing_is_written(location, tmp_path):
    write_jsonl(tmp_path / "t.jsonl", [{"q": "Write a haiku about 3 cats."}])
    import_data(location, ImportConfig(str(tmp_path / "t.jsonl"), "poems", ColumnMap.parse("prompt=q"), task="text"))
    before = tree_fingerprint(location.home)
    with pytest.raises(TracebankError, match="math word problems"):
        augment(location, AugmentConfig("poems", count=2))
    assert tree_fingerprint(location.home) == before


def test_cli_augments_and_refuses_bad_methods_in_one_line(location, gsm):
    base = [sys.executable, "-m", "tracebank", "augment", gsm, "--catalog", str(location.home)]
    done = subprocess.run([*base, "--method", "numbers,distractor", "--count", "2", "--no-solve"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 new" in done.stdout and "sample" in done.stdout
    bad = subprocess.run(
        [*base, "--method", "numbers,rhyme", "--no-solve"], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 1 and len(lines) == 1 and "choose from" in lines[0]
