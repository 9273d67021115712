"""The openai backend end to end, over real HTTP to a loopback stub teacher (no mocked client)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import pytest

from tests.builders.conftest import import_questions, openai_config, start_stub
from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.cache import RequestCache
from tracebank.builders.runner import BuildConfig, BuildIncomplete, build
from tracebank.builders.sink import PREFIX, traces_dir
from tracebank.errors import TracebankError


def _traces(location):
    with catalog.Catalog(location) as cat:
        return cat.sql("SELECT * FROM traces ORDER BY prompt_id, sample_idx").to_dicts()


def _run_counters(location):
    with catalog.Catalog(location) as cat:
        rows = cat.sql("SELECT counters FROM runs WHERE stage = 'build' ORDER BY finished_at DESC LIMIT 1").to_dicts()
    return {c["name"]: c["value"] for c in rows[0]["counters"]}


def _cache_size(location):
    if not location.request_cache.exists():
        return 0
    with RequestCache(location.request_cache) as cache:
        return len(cache)


def test_builds_over_http_with_usage_tokens_and_cost_then_reruns_for_free(location, tmp_path, stub):
    dataset = import_questions(location, tmp_path / "q.jsonl", [f"What is {i} plus {i}?" for i in range(6)])
    result = build(location, openai_config(dataset, stub.base_url, samples=2))
    rows = _traces(location)
    assert (result.sent, result.traces_new, len(rows), stub.stats()["answered"]) == (12, 12, 12, 12)
    assert {r["backend"] for r in rows} == {"openai"} and {r["policy"] for r in rows} == {"teacher"}
    for r in rows:
        assert r["rationale"] and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        expected = (r["prompt_tokens"] * 0.15 + r["completion_tokens"] * 0.60) / 1e6  # gpt-4o-mini list price
        assert r["cost_usd"] == pytest.approx(expected)
    assert result.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows))
    again = build(location, openai_config(dataset, stub.base_url, samples=2))
    assert (again.sent, again.existing, again.snapshot, stub.stats()["received"]) == (0, 12, None, 12)


def test_transient_failures_are_retried_until_each_request_succeeds_once(location, tmp_path, stub):
    questions = ["plain", "flaky [[fail:2:500]]", "dropped [[fail:2:drop]]", "busy [[fail:2:429]]"]
    dataset = import_questions(location, tmp_path / "q.jsonl", questions)
    result = build(location, openai_config(dataset, stub.base_url))
    stats = stub.stats()
    assert (result.traces_new, result.failed, result.retries) == (4, 0, 6)
    assert (stats["received"], stats["answered"], stats["answered_twice"]) == (10, 4, 0)
    assert _cache_size(location) == 4 and all(r["finish_reason"] == "stop" for r in _traces(location))


def test_retry_after_is_honoured(location, tmp_path):
    with start_stub(retry_after_s=0.3) as stub:
        dataset = import_questions(location, tmp_path / "q.jsonl", ["busy [[fail:1:429]]"])
        build(location, openai_config(dataset, stub.base_url))
        (arrivals,) = stub.teacher.arrivals.values()
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 0.29  # the server asked for 300 ms


def test_429s_halve_the_concurrency_and_everything_still_completes(location, tmp_path, stub):
    dataset = import_questions(location, tmp_path / "q.jsonl", [f"q{i} [[fail:1:429]]" for i in range(24)])
    result = build(location, openai_config(dataset, stub.base_url, options={"concurrency": 16}))
    counters = _run_counters(location)
    assert result.traces_new == 24 and stub.stats()["answered_twice"] == 0
    assert counters["teacher_throttled"] == 24 and counters["teacher_concurrency_cuts"] >= 1
    assert counters["teacher_concurrency_final"] < 16


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_stop_the_run_with_what_to_fix_and_change_nothing(location, tmp_path, monkeypatch, status):
    monkeypatch.setenv("TB_TEST_KEY", "wrong-key")
    with start_stub(api_key="right-key" if status == 401 else None) as stub:
        marks = "" if status == 401 else " [[status:403]]"
        dataset = import_questions(location, tmp_path / "q.jsonl", [f"q{i}{marks}" for i in range(3)])
        cfg = openai_config(dataset, stub.base_url, options={"api_key_env": "TB_TEST_KEY", "concurrency": 1})
        with pytest.raises(TracebankError, match=rf"refused the request \(HTTP {status}.*TB_TEST_KEY"):
            build(location, cfg)
        assert stub.stats()["received"] == 1  # it stopped at the first refusal
    assert _traces(location) == [] and _cache_size(location) == 0
    assert not list(traces_dir(location).glob(f"{PREFIX}-*")) if traces_dir(location).exists() else True


def test_a_forbidden_request_mid_run_keeps_every_finished_response(location, tmp_path, stub):
    questions = [f"q{i}" for i in range(5)] + ["forbidden [[status:403]]"]
    dataset = import_questions(location, tmp_path / "q.jsonl", questions)
    with pytest.raises(TracebankError, match="403.*saved in the request cache"):
        build(location, openai_config(dataset, stub.base_url, options={"concurrency": 1}))
    assert _cache_size(location) == stub.stats()["answered"] and _traces(location) == []


def test_a_400_becomes_a_failed_trace_with_its_reason_and_is_not_paid_twice(location, tmp_path, stub):
    dataset = import_questions(location, tmp_path / "q.jsonl", ["fine", "huge [[status:400]]"])
    result = build(location, openai_config(dataset, stub.base_url))
    failed = [r for r in _traces(location) if r["finish_reason"] != "stop"]
    assert (result.traces_new, result.failed, len(failed)) == (2, 1, 1)
    assert failed[0]["finish_reason"] == "error:context_length" and failed[0]["rationale"] is None
    assert "maximum context length" in orjson.loads(failed[0]["meta"])["error"]
    received = stub.stats()["received"]
    assert build(location, openai_config(dataset, stub.base_url)).sent == 0 and stub.stats()["received"] == received
    retried = build(location, openai_config(dataset, stub.base_url, retry_failed=True))
    assert (retried.sent, stub.stats()["received"], len(_traces(location))) == (1, received + 1, 2)


def test_a_timeout_leaves_the_request_unfinished_and_a_rerun_sends_only_it(location, tmp_path, stub):
    dataset = import_questions(location, tmp_path / "q.jsonl", ["fast one", "fast two", "slow [[sleep:1]]"])
    with pytest.raises(BuildIncomplete, match="1 requests did not finish") as raised:
        build(location, openai_config(dataset, stub.base_url, options={"timeout_s": 0.2, "max_retries": 1}))
    assert (raised.value.result.unfinished, raised.value.result.traces_new) == (1, 2)
    assert len(_traces(location)) == 2 and _cache_size(location) == 2  # finished work is committed
    received = stub.stats()["received"]
    rerun = build(location, openai_config(dataset, stub.base_url, options={"timeout_s": 10}))
    assert (rerun.sent, rerun.existing, len(_traces(location))) == (1, 2, 3)
    assert stub.stats()["received"] == received + 1


@pytest.mark.parametrize("honour_n", [True, False])
def test_samples_share_one_call_where_the_server_honours_n(location, tmp_path, honour_n):
    with start_stub(honour_n=honour_n) as stub:
        dataset = import_questions(location, tmp_path / "q.jsonl", [f"q{i}" for i in range(4)])
        result = build(location, openai_config(dataset, stub.base_url, samples=3, options={"n": 3, "concurrency": 1}))
        calls = stub.stats()["received"]
    rows = _traces(location)
    assert result.traces_new == len(rows) == 12 and len({r["rationale"] for r in rows}) == 12
    assert calls == (4 if honour_n else 12)  # llama.cpp-style servers get the other samples one by one
    assert _run_counters(location)["teacher_n_honoured"] == int(honour_n)
    if honour_n:  # three choices share one prompt: each trace pays a third of it
        by_prompt = {}
        for r in rows:
            by_prompt.setdefault(r["prompt_id"], []).append(r)
        assert all(len({r["prompt_tokens"] for r in group}) == 1 for group in by_prompt.values())


def test_a_cost_cap_stops_cleanly_and_a_higher_cap_finishes_the_rest(location, tmp_path, stub):
    dataset = import_questions(location, tmp_path / "q.jsonl", [f"question number {i}" for i in range(10)])
    prices = {"price_in": 1000.0, "price_out": 1000.0}  # USD per 1M tokens: about 3 cents a request
    capped = build(
        location, openai_config(dataset, stub.base_url, max_cost_usd=0.1, options={"concurrency": 1}, **prices)
    )
    per_request = capped.cost_usd / capped.traces_new
    assert capped.stopped == "max_cost_usd" and 0 < capped.traces_new < 10 and capped.unsent == 10 - capped.traces_new
    assert capped.cost_usd <= 0.1 + per_request and len(_traces(location)) == capped.traces_new
    rest = build(location, openai_config(dataset, stub.base_url, max_cost_usd=10.0, **prices))
    assert (rest.sent, rest.stopped, len(_traces(location)), stub.stats()["received"]) == (capped.unsent, None, 10, 10)


def test_a_token_cap_stops_before_it_is_passed(location, math_dataset):
    teacher = FakeTeacher()  # 20 prompt + 10 completion tokens per response
    result = build(location, BuildConfig(math_dataset, samples=2, max_new_tokens=16, max_tokens=100), teacher)
    assert (result.stopped, len(teacher.sent), result.traces_new, len(_traces(location))) == ("max_tokens", 3, 3, 3)
    assert result.prompt_tokens + result.completion_tokens <= 100


def test_a_cost_cap_without_a_price_is_refused_before_anything_is_sent(location, math_dataset):
    teacher = FakeTeacher()
    with pytest.raises(TracebankError, match="needs a price"):
        build(location, BuildConfig(math_dataset, max_cost_usd=1.0), teacher)
    assert teacher.sent == []


def _wait_for_cache_rows(path, rows, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            with sqlite3.connect(path, timeout=30) as db:
                try:
                    if db.execute("SELECT count(*) FROM responses").fetchone()[0] >= rows:
                        return
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"the build never cached {rows} responses (exit code {process.poll()})")


def test_kill_9_mid_build_then_a_rerun_sends_only_the_unfinished_requests(location, tmp_path):
    with start_stub(latency_s=0.1) as stub:
        dataset = import_questions(location, tmp_path / "q.jsonl", [f"question {i}" for i in range(30)])
        command = [sys.executable, "-m", "tracebank", "build", dataset, "--backend", "openai", "--model", "m",
                   "--samples", "1", "--max-new-tokens", "64", "--base-url", stub.base_url, "--concurrency", "2", "--catalog", str(location.home)]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for_cache_rows(location.request_cache, 6, process)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        assert _traces(location) == []  # killed before its commit: the catalog is untouched
        cached = _cache_size(location)
        answered = stub.stats()["answered"]
        assert 6 <= cached <= answered <= cached + 2  # at most the 2 in flight were lost
        result = build(location, openai_config(dataset, stub.base_url, model="m"))
        assert (result.cached, result.sent) == (cached, 30 - cached)
        assert stub.stats()["answered"] == answered + 30 - cached
    rows = _traces(location)
    assert len(rows) == len({r["trace_id"] for r in rows}) == 30
