"""math-verify equivalence, run in worker processes (never in threads), with timeouts and a cache."""

import threading

import pytest

from tracebank import verdict_cache
from tracebank.tasks import get_task, symbolic

MATH = get_task("math")


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("\\frac{\\sqrt 3}{2}", "\\boxed{\\frac{\\sqrt{3}}{2}}"),
        ("(x+1)^2", "\\boxed{x^2+2x+1}"),
        ("\\sqrt{8}", "\\boxed{2\\sqrt{2}}"),
        ("\\frac{\\pi}{2}", "\\boxed{\\pi/2}"),
        ("\\{2, 1\\}", "\\boxed{\\{1,2\\}}"),
        ("1+2x", "2x+1"),
        ("\\sqrt{4}", "#### 2"),
    ],
)
def test_equivalent_forms_are_correct(answer, reference):
    verdict = MATH.verify(answer, reference)
    assert (verdict.correct, verdict.reason, verdict.detail) == (1, "correct", "math-verify")


def test_fraction_and_decimal_agree_both_ways():
    # numbers on both sides: the in-process numeric rule; LaTeX on one side: math-verify
    assert MATH.is_correct("0.5", "\\boxed{\\frac{1}{2}}") == 1
    assert MATH.is_correct(MATH.parse("so the answer is $\\frac{1}{2}$"), "#### 0.5") == 1
    assert symbolic.check("\\frac{1}{2}", "0.5") == (1, "correct")
    assert symbolic.check("\\frac{1}{2}", "0.6") == (0, "mismatch")


@pytest.mark.parametrize(
    ("answer", "reference"),
    [("x^3", "\\boxed{x^2}"), ("\\sqrt{3}", "\\boxed{\\frac{\\sqrt 3}{2}}"), ("(2, 1)", "(1, 2)")],
)
def test_different_expressions_are_mismatches(answer, reference):
    assert MATH.verify(answer, reference).reason == "mismatch"


def test_unparsable_latex_is_a_parse_error():
    assert symbolic.check("1", "\\frac{") == (0, "parse_error")


def test_a_check_past_its_time_limit_is_a_timeout():
    # summing 10^9 symbolic terms cannot finish in a second: math-verify's alarm stops it
    assert symbolic.check_many([("\\sum_{k=1}^{10^{9}} k^{k}", "5")], timeout_s=1) == [(0, "timeout")]


def test_checks_from_a_thread_still_run_in_worker_main_threads():
    results = []
    thread = threading.Thread(target=lambda: results.append(MATH.verify("(x+1)^2", "\\boxed{x^2+2x+1}")))
    thread.start()
    thread.join(60)
    assert results and results[0].correct == 1


def test_verdicts_are_cached_by_their_inputs_and_timeouts_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv(verdict_cache.ENV, str(tmp_path / "verdicts.sqlite"))
    pairs = [("x^2+2x+1", "(x+1)^2"), ("x^2", "x^3")]
    first = symbolic.check_many(pairs)
    keys = [symbolic.hashing.digest("math-verify", symbolic.CHECKER, symbolic.TIMEOUT_S, g, a) for g, a in pairs]
    stored = verdict_cache.get_many(keys)
    assert [(stored[k]["correct"], stored[k]["reason"]) for k in keys] == first == [(1, "correct"), (0, "mismatch")]
    verdict_cache.put_many({"slow": {"correct": 0, "reason": "timeout"}})
    assert verdict_cache.get_many(["slow"]) == {}


def test_the_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(verdict_cache.ENV, "off")
    verdict_cache.put_many({"k": {"correct": 1, "reason": "correct"}})
    assert verdict_cache.location() is None and verdict_cache.get_many(["k"]) == {}
