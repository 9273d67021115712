"""A teacher that misbehaves: gigabyte replies, endless streams, HTML pages. Real HTTP to the stub's hostile modes.

Every case ends the one request clearly (a failed trace with its kind, or an unfinished request with
its reason), bounded in memory and time, while the other requests' responses are cached and committed.
"""

import resource
import subprocess
import sys
import time

import pytest

from tests.builders.conftest import import_questions, openai_config, start_stub
from tracebank import catalog
from tracebank.builders.cache import RequestCache
from tracebank.builders.runner import BuildIncomplete, build
from tracebank.errors import TracebankError

PLAIN = ["What is 1 plus 1?", "What is 2 plus 2?"]


def _traces(location):
    with catalog.Catalog(location) as cat:
        return cat.sql(
            "SELECT p.messages[1].content AS question, t.finish_reason, t.rationale, t.meta, t.request_key "
            "FROM traces t JOIN prompts p USING (prompt_id) ORDER BY question"
        ).to_dicts()


def _cached_keys(location):
    with RequestCache(location.request_cache) as cache:
        return {key for key, response in cache.get_many(_all_keys(location)).items() if response.text}


def _all_keys(location):
    with catalog.Catalog(location) as cat:
        return [r[0] for r in cat.con.execute("SELECT request_key FROM traces").fetchall()]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_huge_stream_and_html_replies_fail_alone_unread_and_the_rest_is_cached(location, tmp_path):
    hostile = {
        "huge [[reply:huge]]": "too_large",
        "stream [[reply:sse]]": "event_stream",
        "page [[reply:html]]": "not_json",
    }
    peak_before, started = _peak_rss_mb(), time.monotonic()
    with start_stub() as stub:  # a huge reply is 2 GiB unless the client stops reading
        dataset = import_questions(location, tmp_path / "q.jsonl", [*PLAIN, *hostile])
        result = build(location, openai_config(dataset, stub.base_url, options={"max_reply_mb": 1}))
    assert time.monotonic() - started < 30
    assert _peak_rss_mb() - peak_before < 500  # not the 2 GiB the server offered
    rows = {r["question"]: r for r in _traces(location)}
    assert (result.traces_new, result.failed) == (5, 3)
    for question, kind in hostile.items():
        assert rows[question]["finish_reason"] == f"error:{kind}" and rows[question]["rationale"] is None
    assert all(rows[q]["finish_reason"] == "stop" and rows[q]["rationale"] for q in PLAIN)
    assert _cached_keys(location) == {rows[q]["request_key"] for q in PLAIN}
    assert stub.stats()["statuses"] == {"200": 2, "huge": 1, "sse": 1, "html": 1}  # each sent once: no retries


def test_the_failure_reason_says_what_was_wrong(location, tmp_path):
    with start_stub(huge_mb=8) as stub:
        dataset = import_questions(location, tmp_path / "q.jsonl", ["huge [[reply:huge]]", "page [[reply:html]]"])
        build(location, openai_config(dataset, stub.base_url, options={"max_reply_mb": 2}))
    with RequestCache(location.request_cache) as cache:
        reasons = sorted(r.error for r in cache.get_many(_all_keys(location)).values())
    assert reasons[0] == "the reply is larger than 2 MiB (max_reply_mb); it was not read"
    assert reasons[1].startswith("the server's 200 reply is not JSON: '<html><body><h1>Welcome to nginx!")
    assert all("\n" not in reason for reason in reasons)


def test_a_small_compressed_reply_that_inflates_past_the_cap_is_stopped(location, tmp_path):
    with start_stub(huge_mb=64) as stub:  # 64 MiB inflated from about 64 KiB
        dataset = import_questions(location, tmp_path / "q.jsonl", [*PLAIN, "bomb [[reply:gzip]]"])
        result = build(location, openai_config(dataset, stub.base_url, options={"max_reply_mb": 1}))
    rows = {r["question"]: r for r in _traces(location)}
    assert (result.traces_new, result.failed) == (3, 1) and rows["bomb [[reply:gzip]]"][
        "finish_reason"
    ] == "error:too_large"
    assert _cached_keys(location) == {rows[q]["request_key"] for q in PLAIN}


def test_a_reply_under_the_cap_is_read_whole(location, tmp_path):
    with start_stub() as stub:
        dataset = import_questions(location, tmp_path / "q.jsonl", PLAIN)
        result = build(location, openai_config(dataset, stub.base_url, options={"max_reply_mb": 0.001}))
    assert (result.traces_new, result.failed) == (2, 0)  # a stub reply is about 300 bytes, under 1 KiB


def test_a_reply_that_never_ends_stops_at_the_deadline_and_the_rest_is_committed(location, tmp_path):
    with start_stub() as stub:
        dataset = import_questions(location, tmp_path / "q.jsonl", [*PLAIN, "slow [[reply:trickle]]"])
        started = time.monotonic()
        with pytest.raises(BuildIncomplete, match=r"1 requests did not finish \(last error: .*TimeoutError") as error:
            build(location, openai_config(dataset, stub.base_url, options={"timeout_s": 1, "max_retries": 1}))
        assert time.monotonic() - started < 10  # two attempts of 1 s each, not forever
    assert (error.value.result.traces_new, error.value.result.unfinished) == (2, 1)
    assert {r["question"] for r in _traces(location)} == set(PLAIN)  # the slow one is sent again next build
    assert len(_cached_keys(location)) == 2


def test_max_reply_mb_must_be_positive():
    from tracebank.builders.openai_backend import OpenAIOptions

    with pytest.raises(TracebankError, match="max_reply_mb must be positive"):
        OpenAIOptions(base_url="http://127.0.0.1:1/v1", max_reply_mb=0)


def test_the_cli_exits_1_with_one_line_when_a_reply_never_ends(location, tmp_path):
    with start_stub() as stub:
        import_questions(location, tmp_path / "q.jsonl", ["slow [[reply:trickle]]"])
        before = catalog.Catalog(location)
        snapshot = before.snapshot_id()
        before.close()
        command = [sys.executable, "-m", "tracebank", "build", "q", "--backend", "openai", "--model", "m",
                   "--base-url", stub.base_url, "--timeout", "1", "--max-retries", "0",
                   "--catalog", str(location.home)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not finish" in errors[0] and "TimeoutError" in errors[0]
    with catalog.Catalog(location) as cat:
        assert cat.snapshot_id() == snapshot and cat.scalar("SELECT count(*) FROM traces") == 0
