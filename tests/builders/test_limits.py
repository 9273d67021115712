"""Flow control and reply classification as pure functions (no clock, no network)."""

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tracebank.builders.base import Response, SamplingParams
from tracebank.builders.budget import Budget, Price, resolve_price
from tracebank.builders.limits import AIMDLimiter, TokenBucket, backoff_s, retry_delay_s
from tracebank.builders.plans import plan_requests
from tracebank.builders.replies import classify, fail_kind, split_tokens
from tracebank.builders.transport import HttpReply, parse_retry_after
from tracebank.errors import TracebankError


def test_aimd_halves_once_per_overload_and_regrows_one_per_window():
    limiter = AIMDLimiter(64)
    epoch = limiter.epoch
    for _ in range(40):  # an overloaded server: every reply a 429, all sent under the same limit
        limiter.on_throttle(epoch)
    assert (limiter.limit, limiter.decreases) == (32, 1)  # cut once, after enough evidence
    for _ in range(16):
        limiter.on_throttle(limiter.epoch)
    assert limiter.limit == 16
    for _ in range(16):  # one window of successes at 16 grows it by about one
        limiter.on_success(limiter.epoch)
    assert 16.9 < limiter.limit < 17.1
    for _ in range(20):
        for _ in range(16):
            limiter.on_throttle(limiter.epoch)
    assert limiter.limit == 1  # never below the minimum
    for _ in range(100_000):
        limiter.on_success()
    assert limiter.limit == 64  # never above the maximum


def test_aimd_is_not_fooled_by_a_few_percent_of_random_429s():
    limiter = AIMDLimiter(256)
    for i in range(20_000):  # one reply in twenty is a 429, spread out
        if i % 20 == 7:
            limiter.on_throttle(limiter.epoch)
        else:
            limiter.on_success(limiter.epoch)
    assert (limiter.decreases, limiter.limit) == (0, 256)


def test_aimd_blocks_at_the_limit_and_releases_in_order():
    async def scenario():
        limiter = AIMDLimiter(2)
        await limiter.acquire()
        await limiter.acquire()
        third = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        blocked = not third.done()
        limiter.release()
        await asyncio.sleep(0)
        return blocked, third.done(), limiter.in_flight

    assert asyncio.run(scenario()) == (True, True, 2)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def test_token_bucket_waits_for_what_is_not_there_and_takes_refunds():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, burst=10, clock=clock)
    assert bucket.reserve(10) == 0
    assert bucket.reserve(5) == pytest.approx(0.5)  # 5 tokens short at 10/s
    clock.now = 1.5  # refilled 15, capped at the burst
    assert bucket.reserve(5) == 0
    bucket.refund(100)
    assert bucket.tokens == 10


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(0)
    for attempt, step in ((1, 1.0), (2, 2.0), (3, 4.0), (8, 30.0)):
        delays = [backoff_s(attempt, 1.0, 30.0, rng) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step and max(delays) - min(delays) > step / 10
    assert 2.0 <= retry_delay_s(1, 2.0, 1.0, 30.0, rng) <= 2.2  # Retry-After wins over backoff


def test_retry_after_headers_are_parsed_in_every_form():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert 28 < parse_retry_after({"retry-after": later}) <= 30
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "body", "action", "kind"),
    [
        (200, b"{}", "ok", None),
        (429, b'{"error": {"message": "slow down"}}', "throttle", None),
        (429, b'{"error": {"code": "insufficient_quota", "message": "You exceeded your quota"}}', "fatal", None),
        (500, b"oops", "retry", None),
        (503, b"", "retry", None),
        (408, b"", "retry", None),
        (
            400,
            b'{"error": {"message": "This model\'s maximum context length is 2048 tokens"}}',
            "fail",
            "context_length",
        ),
        (
            400,
            b'{"error": {"code": "content_filter", "message": "The response was filtered by the content_filter"}}',
            "fail",
            "content_filter",
        ),
        (422, b'{"detail": "temperature must be <= 2"}', "fail", "bad_request"),
        (413, b"payload too large", "fail", "context_length"),
        (401, b'{"error": {"message": "bad key"}}', "fatal", None),
        (403, b"", "fatal", None),
        (404, b'{"error": {"message": "model not found"}}', "fatal", None),
        (402, b"pay up", "fatal", None),
    ],
)
def test_every_status_is_classified(status, body, action, kind):
    reply = HttpReply(status, body)
    got, reason = classify(reply)
    assert got == action
    if kind is not None:
        assert fail_kind(reply, reason) == kind


def test_usage_of_several_choices_is_split_by_length_and_sums_exactly():
    stop = ["stop", "stop", "stop"]
    assert split_tokens(100, ["a" * 40, "b" * 120, ""], stop, cap=512) == [25, 75, 0]
    assert sum(split_tokens(101, ["x" * 10, "y" * 30, "z" * 30], stop, cap=512)) == 101
    assert split_tokens(None, ["abcd" * 5], ["stop"], cap=512) == [5]


def test_a_choice_cut_at_the_limit_used_exactly_the_limit_and_no_share_passes_it():
    shares = split_tokens(40, ["a" * 400, "tiny"], ["length", "stop"], cap=24)
    assert shares == [24, 16]
    shares = split_tokens(48, ["short", "a much much longer text than the other one"], ["stop", "stop"], cap=24)
    assert shares == [24, 24]  # by length the second would get 41: capped, the rest goes to the first


def _requests(count):
    prompts = [
        {"prompt_id": f"p{i}", "task": "text", "messages": [{"role": "user", "content": "x" * 400}]}
        for i in range(count)
    ]
    return plan_requests(prompts, "m", SamplingParams(max_new_tokens=100), samples=1)


def test_budget_gate_uses_the_worst_case_first_then_the_mean_of_what_finished():
    budget = Budget(max_cost_usd=None, max_tokens=1000, price=Price(0, 0))
    gate = budget.gate(_requests(50))
    first = next(gate)  # worst case: ~100 prompt + 100 new tokens fits in 1000
    budget.charge(Response(first.key, "t", "stop", prompt_tokens=100, completion_tokens=100))
    let_through = 1 + sum(1 for _ in zip(range(10), gate, strict=False))
    assert budget.stopped == "max_tokens" and let_through == 5  # 200 spent + 4 in flight x 200 expected = the cap


def test_a_cost_cap_needs_a_price_and_prices_resolve_in_order():
    with pytest.raises(TracebankError, match="needs a price"):
        Budget(max_cost_usd=1.0, max_tokens=None, price=None)
    assert resolve_price("gpt-4o-mini", local=False, price_in=None, price_out=None) == Price(0.15, 0.60)
    assert resolve_price("my-model", local=True, price_in=None, price_out=None) == Price(0.0, 0.0)
    assert resolve_price("my-model", local=False, price_in=None, price_out=None) is None
    assert resolve_price("gpt-4o", local=False, price_in=1.0, price_out=2.0) == Price(1.0, 2.0)
    shared = Response("k", "t", "stop", prompt_tokens=300, completion_tokens=10, shared_by=3)
    assert Price(1e6, 1e6).cost(shared) == pytest.approx(110.0)  # a third of the prompt, all of its completion
