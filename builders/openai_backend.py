"""Any OpenAI-compatible chat-completions server as a teacher: OpenAI, vLLM, SGLang, llama.cpp, Ollama.

Requests go out on an asyncio loop in a background thread, at most ``concurrency`` at once
(halved on 429 and regrown, AIMD), within ``rpm``/``tpm`` token buckets, through the
:mod:`~tracebank.builders.transport` seam. Each response is handed to the caller the moment it
is parsed, so the runner can make it durable before it counts as done.

How each reply is treated:

* 200: parsed; ``usage`` gives the tokens (an estimate when absent). With ``n > 1``, samples of
  one prompt with equal parameters go as one call; when fewer choices come back than asked (the
  server ignores ``n``, as llama.cpp does) the rest are sent one by one from then on.
* 408, 409, 425, 5xx, dropped connections, timeouts: retried with jittered exponential backoff,
  at most ``max_retries`` times; then the request is left unfinished (not cached, sent again by
  the next build).
* 429: the same, waiting what Retry-After says, and halving the concurrency.
* 400, 413, 422 (context too long, content filter, a bad parameter): a failed trace with the
  server's reason, cached, so it is not paid for again (``--retry-failed`` sends them again).
* A reply no retry can fix fails the same way, unread past what shows it: larger than
  ``max_reply_mb`` (``error:too_large``), an event stream nobody asked for (``error:event_stream``),
  a 200 body that is not JSON (``error:not_json``). A reply that never ends stops at ``timeout_s``.
* 401, 403, 404, 429 ``insufficient_quota`` and other 4xx: the run stops with what to fix, after
  the requests in flight have finished; everything finished is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from tracebank.builders.base import UNFINISHED, Request, Response
from tracebank.builders.budget import prompt_tokens_estimate
from tracebank.builders.limits import AIMDLimiter, TokenBucket, retry_delay_s
from tracebank.builders.replies import choice_text, classify, fail_kind, split_tokens
from tracebank.builders.transport import (
    DEFAULT_MAX_REPLY_MB,
    BadReply,
    HttpReply,
    Transport,
    TransportError,
    open_aiohttp,
)
from tracebank.errors import TracebankError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"


@dataclass(frozen=True)
class OpenAIOptions:
    """Options of the ``openai`` backend (``options:`` in a build config, or ``tracebank build`` flags)."""

    base_url: str | None = None  # ends in /v1; default $OPENAI_BASE_URL, else OpenAI's API
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (never the key: configs are stored)
    concurrency: int = 64  # requests in flight at most (AIMD lowers it on 429)
    rpm: float | None = None  # requests per minute at most
    tpm: float | None = None  # tokens per minute at most (prompt estimate + max_new_tokens, as servers count)
    timeout_s: float = 600.0  # a whole request, reply included (a reply that never ends stops here)
    max_reply_mb: float = DEFAULT_MAX_REPLY_MB  # a larger reply is a failed trace, never read into memory
    connect_timeout_s: float = 10.0
    max_retries: int = 8  # per request, for retryable failures; then it is left unfinished
    backoff_s: float = 1.0  # first retry waits about this long; each next one twice as long
    max_backoff_s: float = 60.0
    n: int = 1  # samples per call when the server honours n (vLLM, OpenAI); 1 = one request per sample
    max_tokens_field: str = "max_tokens"  # or max_completion_tokens (OpenAI reasoning models)

    def __post_init__(self) -> None:
        if not self.base().startswith(("http://", "https://")):
            raise TracebankError(f"base_url must start with http:// or https://, got {self.base()!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise TracebankError(f"api_key_env must name an environment variable, got {self.api_key_env!r}")
        if not 1 <= self.concurrency <= 10_000:
            raise TracebankError(f"concurrency must be in [1, 10000], got {self.concurrency}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise TracebankError(f"{name} must be positive, got {value}")
        for name in ("timeout_s", "connect_timeout_s", "backoff_s", "max_reply_mb"):
            if getattr(self, name) <= 0:
                raise TracebankError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_backoff_s < self.backoff_s:
            raise TracebankError(f"max_backoff_s ({self.max_backoff_s}) must be at least backoff_s ({self.backoff_s})")
        if self.max_retries < 0:
            raise TracebankError(f"max_retries must be 0 or more, got {self.max_retries}")
        if not 1 <= self.n <= 128:
            raise TracebankError(f"n must be in [1, 128], got {self.n}")
        if self.max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise TracebankError(
                f"max_tokens_field must be max_tokens or max_completion_tokens, got {self.max_tokens_field!r}"
            )

    def base(self) -> str:
        return (self.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")

    def endpoint(self) -> str:
        return self.base() + "/chat/completions"


TransportFactory = Callable[[], AbstractAsyncContextManager[Transport]]


class OpenAITeacher:
    backend = "openai"

    def __init__(self, model: str, transport: TransportFactory | None = None, **options: Any):
        self.model = model
        self.options = OpenAIOptions(**options)
        self._transport = transport or self._aiohttp
        self.stats: dict[str, float] = {}  # counters of the last generate(): retries, throttled, ...
        self._engine: _Engine | None = None

    def _aiohttp(self) -> AbstractAsyncContextManager[Transport]:
        o = self.options
        key = os.environ.get(o.api_key_env)
        return open_aiohttp(o.endpoint(), key, o.concurrency, o.timeout_s, o.connect_timeout_s, o.max_reply_mb)

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        """Responses in completion order; raises TracebankError after the last one if the run had to stop."""
        engine = self._engine = _Engine(self.model, self.options, self._transport)
        thread = threading.Thread(target=engine.run, args=(iter(requests),), name="tracebank-openai", daemon=True)
        thread.start()
        try:
            while (item := engine.out.get()) is not _DONE:
                yield item
        finally:
            engine.stop()  # a no-op after a normal end; cancels the sends when the caller stops early
            thread.join()
            self.stats = engine.counters()
        if engine.crash is not None:
            raise engine.crash
        if engine.fatal is not None:
            raise TracebankError(engine.fatal)

    def waiting(self) -> int:
        """Responses finished by the send thread and not yet yielded (see the Teacher protocol)."""
        return self._engine.out.qsize() if self._engine is not None else 0


_DONE = object()


class _Engine:
    """One build's sends: the dispatch loop, retries and reply parsing, on a private event loop."""

    def __init__(self, model: str, options: OpenAIOptions, transport: TransportFactory):
        self.model = model
        self.options = options
        self.open_transport = transport
        self.out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.limiter = AIMDLimiter(options.concurrency)
        self.rpm = TokenBucket(options.rpm / 60, options.rpm / 60) if options.rpm else None
        self.tpm = TokenBucket(options.tpm / 60, options.tpm / 60) if options.tpm else None
        self.rng = random.Random()
        self.requeue: deque[list[Request]] = deque()
        self.n_honoured: bool | None = None
        self.fatal: str | None = None
        self.crash: BaseException | None = None
        self.retries = self.throttled = self.calls = 0
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None

    def counters(self) -> dict[str, float]:
        return {"calls": self.calls, "retries": self.retries, "throttled": self.throttled,
                "concurrency_cuts": self.limiter.decreases, "concurrency_final": int(self.limiter.limit),
                "n_honoured": -1 if self.n_honoured is None else int(self.n_honoured)}  # fmt: skip

    def run(self, requests: Iterator[Request]) -> None:
        try:
            asyncio.run(self._run(requests))
        except asyncio.CancelledError:
            pass  # stopped by the caller
        except BaseException as error:  # a bug, not a server failure: re-raised in the caller's thread
            self.crash = error
        finally:
            self.out.put(_DONE)

    def stop(self) -> None:
        self._stopping.set()
        loop, main = self._loop, self._main
        if loop is not None and main is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing left to stop
                loop.call_soon_threadsafe(main.cancel)

    async def _run(self, requests: Iterator[Request]) -> None:
        self._loop, self._main = asyncio.get_running_loop(), asyncio.current_task()
        if self._stopping.is_set():
            return
        async with self.open_transport() as transport:
            await self._dispatch(requests, transport)

    async def _dispatch(self, requests: Iterator[Request], transport: Transport) -> None:
        pending: set[asyncio.Task[None]] = set()
        groups = self._groups(requests)
        try:
            while self.fatal is None:
                await self.limiter.acquire()
                group = None if self.fatal else self.requeue.popleft() if self.requeue else next(groups, None)
                if group is None:
                    self.limiter.release()
                    if not pending or self.fatal:
                        break
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)  # a send may requeue
                    continue
                tokens = await self._rate_limit(group)
                task = asyncio.create_task(self._send(group, transport, tokens))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)  # after a fatal reply too: what is in flight finishes
        finally:
            for task in pending:
                task.cancel()

    def _groups(self, requests: Iterator[Request]) -> Iterator[list[Request]]:
        """Consecutive samples that differ only in seed and index share one call (up to n)."""
        group: list[Request] = []
        for request in requests:
            n = self.options.n if self.n_honoured is not False else 1
            if n == 1:
                if group:
                    yield group
                    group = []
                yield [request]
                continue
            if group and (len(group) >= n or _group_key(request) != _group_key(group[0])):
                yield group
                group = []
            group.append(request)
        if group:
            yield group

    async def _rate_limit(self, group: list[Request]) -> float:
        if self.rpm is not None:
            await self.rpm.take(1)
        tokens = 0.0
        if self.tpm is not None:
            tokens = prompt_tokens_estimate(group[0]) + group[0].params.max_new_tokens * len(group)
            await self.tpm.take(tokens)
        return tokens

    def _body(self, group: list[Request]) -> bytes:
        first = group[0]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": first.messages,
            "temperature": first.params.temperature,
            "top_p": first.params.top_p,
            self.options.max_tokens_field: first.params.max_new_tokens,
        }
        if first.params.seed is not None:
            body["seed"] = first.params.seed
        if len(group) > 1:
            body["n"] = len(group)
        return orjson.dumps(body)

    async def _send(self, group: list[Request], transport: Transport, tpm_tokens: float) -> None:
        body, attempt, reason = self._body(group), 0, ""
        try:
            while attempt <= self.options.max_retries:
                attempt += 1
                epoch, started = self.limiter.epoch, time.perf_counter()
                self.calls += 1
                try:
                    reply: HttpReply | None = await transport.post(body)
                    action, reason = classify(reply)
                    if action == "ok":
                        if self._parse(group, reply.body, time.perf_counter() - started, attempt, tpm_tokens):
                            self.limiter.on_success(epoch)
                            return
                        action, reason = "retry", "a 200 reply with no choices"
                except TransportError as error:
                    reply, action, reason = None, "retry", f"no reply: {error}"
                except BadReply as error:  # the server answered: a retry would get (and pay for) the same
                    self._emit_all(group, f"error:{error.kind}", str(error), attempt)
                    return
                if action == "fail":
                    self._emit_all(group, f"error:{fail_kind(reply, reason)}", reason, attempt)
                    return
                if action == "fatal":
                    self.fatal = self.fatal or self._fatal_message(reply, reason)
                    return
                if action == "throttle":
                    self.throttled += 1
                    self.limiter.on_throttle(epoch)
                if attempt <= self.options.max_retries:
                    self.retries += 1
                    retry_after = reply.retry_after_s if reply is not None else None
                    o = self.options
                    await asyncio.sleep(retry_delay_s(attempt, retry_after, o.backoff_s, o.max_backoff_s, self.rng))
            self._emit_all(group, UNFINISHED, f"gave up after {attempt} attempts: {reason}", attempt)
        finally:
            self.limiter.release()

    def _emit_all(self, group: list[Request], finish_reason: str, error: str, attempts: int) -> None:
        for request in group:
            self.out.put(Response(request.key, None, finish_reason, error=error, attempts=attempts))

    def _parse(
        self, group: list[Request], body: bytes, latency: float, attempts: int, tpm_tokens: float
    ) -> list[Response] | None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            preview = " ".join(body[:80].decode(errors="replace").split())
            raise BadReply("not_json", f"the server's 200 reply is not JSON: {preview!r}") from None
        try:
            choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))[: len(group)]
            texts = [choice_text(c) for c in choices]
        except (AttributeError, TypeError, KeyError):
            return None
        if not choices:
            return None
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens") or prompt_tokens_estimate(group[0])
        finish = [choice.get("finish_reason") or "stop" for choice in choices]
        completion = split_tokens(usage.get("completion_tokens"), texts, finish, group[0].params.max_new_tokens)
        responses = [
            Response(r.key, text, reason, prompt_tokens, tokens, latency, attempts=attempts, shared_by=len(choices))
            for r, reason, text, tokens in zip(group, finish, texts, completion, strict=False)
        ]
        if len(group) > 1:
            self.n_honoured = len(choices) == len(group)
            self.requeue.extend([request] for request in group[len(choices) :])
        if self.tpm is not None:
            used = prompt_tokens + sum(completion)
            self.tpm.refund(max(0.0, tpm_tokens - used))
        for response in responses:
            self.out.put(response)
        return responses

    def _fatal_message(self, reply: HttpReply | None, reason: str) -> str:
        status = reply.status if reply is not None else 0
        where = f"the server at {self.options.base()}"
        if status in (401, 403):
            key = self.options.api_key_env
            hint = f"${key} is not set" if not os.environ.get(key) else f"check the key in ${key}"
            return (
                f"{where} refused the request (HTTP {status}: {reason}): {hint} (--api-key-env names another variable)"
            )
        if status == 404:
            return (f"{where} answered 404 ({reason}): check --base-url (it usually ends in /v1) "
                    f"and that the server serves model {self.model!r}")  # fmt: skip
        return f"{where} stopped the run (HTTP {status}: {reason})"


def _group_key(request: Request) -> tuple[Any, ...]:
    p = request.params
    return request.model, orjson.dumps(request.messages), p.temperature, p.top_p, p.max_new_tokens
