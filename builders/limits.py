"""Flow control for remote teachers: AIMD concurrency, token-bucket rate limits, jittered backoff.

All of it runs on one asyncio loop (no locks): the dispatcher awaits ``acquire`` before each
send, and each finished send reports success or throttling back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any


class AIMDLimiter:
    """Concurrency that halves under throttling (429) and grows by one per window of successes.

    It halves when at least ``threshold`` of the recent outcomes (``min_samples`` or more, of
    requests sent under the current limit) were throttled. An overloaded server answers most
    requests with 429 and is backed off from at once; a server that sheds a few percent of
    requests at random is not mistaken for one (halving on every 429 would collapse the
    concurrency to a handful). Outcomes of requests sent before a cut are ignored: the burst
    of 429s one overload produces counts once, as TCP counts one loss per window.
    """

    def __init__(self, maximum: int, minimum: int = 1, threshold: float = 0.25, min_samples: int = 16):
        self.maximum = maximum
        self.minimum = minimum
        self.threshold = threshold
        self.min_samples = min_samples
        self.limit = float(maximum)
        self.in_flight = 0
        self.epoch = 0  # bumped on every decrease
        self.decreases = 0
        self._recent: deque[bool] = deque(maxlen=max(64, min_samples))  # throttled? since the last cut
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request is sent under."""
        while self.in_flight >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.in_flight += 1
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def on_success(self, epoch: int | None = None) -> None:
        if epoch is None or epoch == self.epoch:
            self._recent.append(False)
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._wake()

    def on_throttle(self, epoch: int) -> None:
        if epoch != self.epoch:
            return  # sent before the last cut: that overload is already answered
        self._recent.append(True)
        if len(self._recent) < self.min_samples or sum(self._recent) < self.threshold * len(self._recent):
            return
        self.limit = max(float(self.minimum), self.limit / 2)
        self.epoch += 1
        self.decreases += 1
        self._recent.clear()

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


class TokenBucket:
    """``rate`` units per second with ``burst`` capacity; a take larger than what is there waits.

    Takes may run the bucket into debt (a request estimated above the burst still goes, after
    waiting), and ``refund`` returns what an estimate over-charged.
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Any = time):
        self.rate = rate_per_s
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self._clock = clock
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now; returns the seconds to wait before using it (0 when it was there)."""
        self._refill()
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def take(self, amount: float) -> None:
        wait = self.reserve(amount)
        if wait > 0:
            await asyncio.sleep(wait)

    def refund(self, amount: float) -> None:
        self._refill()
        self.tokens = min(self.burst, self.tokens + amount)


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random (AWS's 'equal jitter')."""
    step = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    return step / 2 + rng.uniform(0, step / 2)


def retry_delay_s(attempt: int, retry_after_s: float | None, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The server's Retry-After when it gave one (plus up to 10% jitter), else jittered backoff."""
    if retry_after_s is not None:
        return min(retry_after_s, 600.0) * (1 + rng.uniform(0, 0.1))
    return backoff_s(attempt, base_s, cap_s, rng)
