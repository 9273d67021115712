"""The correctness filter over mixed tasks, through the score runner and the catalog."""

import json

import orjson
import pyarrow as pa
import pytest

from tests.conftest import write_jsonl
from tracebank import catalog, sources
from tracebank.errors import TracebankError
from tracebank.filters.correctness.correctness import Correctness
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.tasks import code as code_task

CODE_REFERENCE = json.dumps({
    "prompt": "def double(x):\n", "test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double",
})  # fmt: skip


def test_one_table_of_math_code_and_text_traces_gets_a_verdict_per_trace():
    table = pa.table({
        "trace_id": ["m1", "m2", "m3", "c1", "c2", "c3", "t1", "x1"],
        "task": ["math", "math", "math", "code", "code", "code", "text", "code"],
        "rationale": [
            "so it is \\boxed{\\frac{1}{2}}", "The answer is $x^2$.", "#### 3",
            "    return x * 2\n", "    return x + 3\n", "```python\nimport os\ndef double(x):\n    os.system('id')\n    return 2 * x\n```",
            "a poem", None,
        ],
        "reference": ["#### 0.5", "\\boxed{x^3}", "\\boxed{\\frac{", CODE_REFERENCE, CODE_REFERENCE, CODE_REFERENCE, None, CODE_REFERENCE],
    })  # fmt: skip
    rows = {r["trace_id"]: r for r in Correctness().score(table).to_pylist()}
    assert list(rows) == table.column("trace_id").to_pylist()  # every trace, in order
    assert {t: rows[t]["reason"] for t in rows} == {
        "m1": "correct", "m2": "mismatch", "m3": "parse_error", "c1": "correct", "c2": "assertion_failed",
        "c3": "sandbox_violation", "t1": "no_reference", "x1": "no_rationale",
    }  # fmt: skip
    assert rows["m1"]["extracted"] == "0.5" and rows["m1"]["detail"] == "numeric"
    assert rows["m2"]["detail"] == "math-verify" and rows["m2"]["expected"] == "x^3"
    assert rows["c2"]["detail"] == "assert candidate(2) == 4" and rows["c2"]["extracted"] is None
    assert rows["c3"]["detail"] == "refused: os.system"
    assert [rows[t]["passed"] for t in ("m1", "c2", "t1", "x1")] == [True, False, None, False]


@pytest.fixture
def code_dataset(location, tmp_path):
    rows = [
        {"task_id": "t/0", "prompt": "def double(x):\n", "entry_point": "double",
         "test": "def check(candidate):\n    assert candidate(2) == 4\n", "solution": "    return x * 2\n"},
        {"task_id": "t/1", "prompt": "def inc(x):\n", "entry_point": "inc",
         "test": "def check(candidate):\n    assert candidate(1) == 2\n", "solution": "    return x\n"},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "code.jsonl", rows)
    cmap = ColumnMap.parse("prompt=prompt,reference=prompt+test+entry_point,response=solution,id=task_id")
    import_data(location, ImportConfig(str(path), "tiny-code", cmap, task="code"))
    return "tiny-code"


def test_code_scores_land_in_the_catalog_and_a_rerun_executes_nothing(location, code_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("TRACEBANK_VERDICT_CACHE", str(tmp_path / "verdicts.sqlite"))
    runs = []
    real_run_tests = code_task.run_tests
    monkeypatch.setattr(code_task, "run_tests", lambda *args: runs.append(1) or real_run_tests(*args))
    result = score(location, ScoreConfig(code_dataset, ("correctness",)))
    assert (result.filters[0].passed, result.filters[0].failed, len(runs)) == (1, 1, 2)
    with catalog.Catalog(location) as cat:
        reference = json.loads(cat.scalar("SELECT reference FROM prompts WHERE source_id = 't/1'"))
        assert reference == {"prompt": "def inc(x):\n", "test": "def check(candidate):\n    assert candidate(1) == 2\n",
                             "entry_point": "inc"}  # fmt: skip
        failure = cat.scalar(
            "SELECT s.detail FROM scores s JOIN traces t USING (trace_id) WHERE t.source_id = 't/1' AND s.metric = 'detail'"
        )
        assert failure == "assert candidate(1) == 2"
    again = score(location, ScoreConfig(code_dataset, ("correctness",)))
    assert again.snapshot is None and len(runs) == 2


def test_a_joined_reference_names_unknown_columns(location, tmp_path):
    path = write_jsonl(tmp_path / "code.jsonl", [{"prompt": "def f():\n", "test": "assert True"}])
    cmap = ColumnMap.parse("prompt=prompt,reference=prompt+test+entry_point")
    with pytest.raises(TracebankError, match="unknown column 'entry_point'"):
        import_data(location, ImportConfig(str(path), "c", cmap, task="code"))


def test_humaneval_imports_from_the_package_by_source_name(location):
    cmap = ColumnMap.parse("prompt=prompt,reference=prompt+test+entry_point,response=canonical_solution,id=task_id")
    result = import_data(location, ImportConfig("humaneval", "humaneval", cmap, task="code", limit=3))
    assert (result.prompts_new, result.traces_new) == (3, 3)
    scored = score(location, ScoreConfig("humaneval", ("correctness",)))
    assert scored.filters[0].passed == 3
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT source FROM prompts LIMIT 1") == str(sources.resolve("humaneval"))


def test_self_consistency_runs_from_the_score_runner(location, scored):
    result = score(location, ScoreConfig(scored, ("self_consistency",)))
    assert result.filters[0].traces == 24
    with catalog.Catalog(location) as cat:
        shares = cat.sql(
            "SELECT DISTINCT value FROM scores WHERE filter = 'self_consistency' AND metric = 'vote_share'"
        )
        assert shares.height >= 1 and all(0 < v <= 1 for v in shares["value"])


LABELED = [d / "gsm8k" / "labeled_solutions_dev.jsonl" for d in sources.data_dirs()]


@pytest.mark.skipif(not any(p.is_file() for p in LABELED), reason="needs ../shared/data/gsm8k")
def test_agrees_with_human_labels_on_real_gpt3_solutions(location):
    path = next(p for p in LABELED if p.is_file())
    cmap = ColumnMap.parse("prompt=question,reference=ground_truth,response=*.solution")
    import_data(location, ImportConfig(str(path), "labeled", cmap))
    score(location, ScoreConfig("labeled", ("correctness",)))
    with catalog.Catalog(location) as cat:
        rows = cat.sql(
            "SELECT t.meta, s.passed FROM traces t JOIN scores s USING (trace_id) WHERE s.metric = 'correct'"
        ).to_dicts()
    agree = sum(bool(r["passed"]) == orjson.loads(r["meta"])["is_correct"] for r in rows)
    assert len(rows) == 400 and agree / len(rows) >= 0.99
