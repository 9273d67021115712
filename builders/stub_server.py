"""A loopback OpenAI-compatible stub teacher: real HTTP on 127.0.0.1, canned replies, injected faults.

For tests, benchmarks and trying a build config before spending money on it::

    python -m tracebank.builders.stub_server --port 8000 --latency 0.2 --p429 0.05 --p500 0.02 --pdrop 0.01
    tracebank build DATASET --backend openai --base-url http://127.0.0.1:8000/v1 --model stub

Faults are drawn per attempt. A request's last user message can also script its own fate:
``[[status:400]]`` (always that status), ``[[fail:2:500]]`` (the first 2 attempts get 500, or
``drop``, then success), ``[[sleep:3]]`` (3 s more latency). Hostile replies, for tests of the
client's limits: ``[[reply:huge]]`` (a 200 JSON body of ``huge_mb`` MiB, streamed), ``[[reply:sse]]``
(an event stream that never ends), ``[[reply:trickle]]`` (a JSON body that never ends, a few
bytes at a time), ``[[reply:html]]`` (a 200 reply that is an HTML page), ``[[reply:gzip]]`` (a
small gzip body that inflates to ``huge_mb`` MiB, at most 256). ``GET /stats`` counts
what was received and answered, per distinct request body, so a benchmark can prove exactly-once
delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import threading
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import xxhash

_MARK = re.compile(r"\[\[(status|fail|sleep|reply):([^\]]+)\]\]")
_HOSTILE = ("huge", "sse", "trickle", "html", "gzip")
_ERRORS = {
    400: "This model's maximum context length is 1024 tokens. However, you requested 5000 tokens. "
    "Please reduce the length of the messages.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to use this model.",
    404: "The model does not exist.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request.",
}


@dataclass(frozen=True)
class StubOptions:
    latency_s: float = 0.0
    honour_n: bool = True  # False: one choice whatever n asks (llama.cpp)
    usage: bool = True  # False: no usage block (some servers)
    p429: float = 0.0
    p500: float = 0.0
    pdrop: float = 0.0  # close the connection without a reply
    retry_after_s: float = 0.05
    api_key: str | None = None  # when set, other keys get 401
    seed: int = 0
    huge_mb: int = 2048  # size of a [[reply:huge]] body (sent as it is read: the stub holds 1 MiB)


class StubTeacher:
    """The aiohttp application and its counters; ``serve`` runs it on the current loop."""

    def __init__(self, options: StubOptions):
        self.options = options
        self.rng = random.Random(options.seed)
        self.attempts: Counter[int] = Counter()  # body hash -> requests received
        self.answered: Counter[int] = Counter()  # body hash -> 200 replies sent
        self.statuses: Counter[str] = Counter()
        self.arrivals: defaultdict[int, list[float]] = defaultdict(list)  # body hash -> monotonic times

    def stats(self) -> dict[str, Any]:
        return {
            "received": sum(self.attempts.values()),
            "distinct_bodies": len(self.attempts),
            "answered": sum(self.answered.values()),
            "answered_bodies": len(self.answered),
            "answered_twice": sum(1 for n in self.answered.values() if n > 1),
            "statuses": dict(self.statuses),
        }

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/stats", self._stats)
        return app

    async def _stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.stats())

    async def _complete(self, request: Any) -> Any:
        from aiohttp import web

        raw = await request.read()
        key = xxhash.xxh64_intdigest(raw)
        self.attempts[key] += 1
        self.arrivals[key].append(time.monotonic())
        body = orjson.loads(raw)
        text = body["messages"][-1]["content"]
        marks = {kind: value for kind, value in _MARK.findall(text)}
        latency = self.options.latency_s + float(marks.get("sleep", 0))
        if latency:
            await asyncio.sleep(latency)
        if marks.get("reply") in _HOSTILE:
            self.statuses[marks["reply"]] += 1
            return await self._hostile(request, marks["reply"])
        fate = self._fate(request, key, marks)
        self.statuses[str(fate)] += 1
        if fate == "drop":
            request.transport.abort()  # no reply at all: the client sees a dropped connection
            return web.Response(status=500)
        if fate != 200:
            headers = {"Retry-After": "1", "retry-after-ms": str(int(self.options.retry_after_s * 1000))}
            error = {"error": {"message": _ERRORS.get(fate, "error"), "type": "stub", "code": fate}}
            return web.Response(status=fate, body=orjson.dumps(error), headers=headers if fate == 429 else None,
                                content_type="application/json")  # fmt: skip
        self.answered[key] += 1
        return web.Response(body=orjson.dumps(self._reply(body, key)), content_type="application/json")

    async def _hostile(self, request: Any, kind: str) -> Any:
        """A reply no client should trust: it streams until the client hangs up (or ``huge_mb``)."""
        from aiohttp import web

        if kind == "html":
            return web.Response(body=b"<html><body><h1>Welcome to nginx!</h1></body></html>", content_type="text/html")
        if kind == "gzip":
            return web.Response(body=_inflating(min(self.options.huge_mb, 256)), content_type="application/json",
                                headers={"Content-Encoding": "gzip"})  # fmt: skip
        content_type = "text/event-stream" if kind == "sse" else "application/json"
        reply = web.StreamResponse(headers={"Content-Type": content_type})
        await reply.prepare(request)
        filler = b"x" * (1 << 20)
        try:
            if kind == "huge":
                await reply.write(b'{"choices": [{"message": {"content": "')
                for _ in range(self.options.huge_mb):
                    await reply.write(filler)
            while kind != "huge":
                await reply.write(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n' if kind == "sse" else b"x")
                await asyncio.sleep(0.05)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what it should do
        return reply

    def _fate(self, request: Any, key: int, marks: dict[str, str]) -> int | str:
        if self.options.api_key and request.headers.get("Authorization") != f"Bearer {self.options.api_key}":
            return 401
        if "status" in marks:
            return int(marks["status"])
        if "fail" in marks:
            times, status = marks["fail"].split(":")
            if self.attempts[key] <= int(times):
                return status if status == "drop" else int(status)
            return 200
        draw = self.rng.random()
        for fate, p in ((429, self.options.p429), (500, self.options.p500), ("drop", self.options.pdrop)):
            if draw < p:
                return fate
            draw -= p
        return 200

    def _reply(self, body: dict[str, Any], key: int) -> dict[str, Any]:
        n = int(body.get("n") or 1) if self.options.honour_n else 1
        prompt_chars = sum(len(m["content"]) for m in body["messages"])
        choices = []
        for index in range(n):
            answer = (key + index) % 97
            content = f"Stub reasoning {key % 10_000}-{index}: add the numbers step by step.\n#### {answer}"
            choices.append({"index": index, "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop"})  # fmt: skip
        reply: dict[str, Any] = {"id": f"stub-{key}", "object": "chat.completion", "model": body["model"],
                                 "choices": choices}  # fmt: skip
        if self.options.usage:
            completion = sum(len(c["message"]["content"]) // 4 for c in choices)
            reply["usage"] = {"prompt_tokens": prompt_chars // 4 + 8, "completion_tokens": completion,
                              "total_tokens": prompt_chars // 4 + 8 + completion}  # fmt: skip
        return reply

    async def serve(self, port: int = 0) -> tuple[Any, int]:
        from aiohttp import web

        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
        await site.start()
        return runner, runner.addresses[0][1]


def _inflating(mb: int) -> bytes:
    """A gzip body that inflates to ``mb`` MiB (about a thousandth of that on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block = b"x" * (1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(mb)), packer.flush()])


class StubServer:
    """The stub on its own thread and event loop (tests): ``with StubServer(...) as stub: stub.base_url``."""

    def __init__(self, options: StubOptions | None = None, port: int = 0):
        self.teacher = StubTeacher(options or StubOptions())
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stub-teacher", daemon=True)
        self.base_url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, port = self._loop.run_until_complete(self.teacher.serve(self._port))
            self.base_url = f"http://127.0.0.1:{port}/v1"
        finally:
            self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> StubServer:
        self._thread.start()
        self._ready.wait(30)
        if not self.base_url:
            raise RuntimeError("the stub teacher did not start (see the thread's traceback above)")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def stats(self) -> dict[str, Any]:
        return self.teacher.stats()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--ignore-n", action="store_true", help="one choice whatever n asks (llama.cpp)")
    parser.add_argument("--no-usage", action="store_true", help="replies without a usage block")
    parser.add_argument("--p429", type=float, default=0.0, help="share of attempts answered 429 (with Retry-After)")
    parser.add_argument("--p500", type=float, default=0.0, help="share of attempts answered 500")
    parser.add_argument("--pdrop", type=float, default=0.0, help="share of attempts dropped without a reply")
    parser.add_argument("--retry-after", type=float, default=0.05, help="seconds a 429 asks the client to wait")
    parser.add_argument("--api-key", default=None, help="require this bearer key (others get 401)")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    options = StubOptions(a.latency, not a.ignore_n, not a.no_usage, a.p429, a.p500, a.pdrop, a.retry_after,
                          a.api_key, a.seed)  # fmt: skip
    asyncio.run(_serve_forever(StubTeacher(options), a.port))


async def _serve_forever(teacher: StubTeacher, port: int) -> None:
    runner, bound = await teacher.serve(port)
    print(f"listening on http://127.0.0.1:{bound}/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
