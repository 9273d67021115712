"""The HTTP seam of the ``openai`` backend: one method, ``post(body) -> HttpReply``.

This is the only module in builders/ that imports an HTTP library. aiohttp is the hot path by
measurement (bench/build_throughput.py): at 256 concurrent requests with 200 ms latency on two
cores, a bare aiohttp client sustains several times the openai SDK's default transport, which is
CPU-bound on its own per-request overhead. Tests and the benchmark drive the real transport
against a loopback server (builders/stub_server.py); unit tests of the retry logic may pass any
object with the same ``post``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import aiohttp


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes
    retry_after_s: float | None = None  # what the server asked us to wait (Retry-After / retry-after-ms)


class TransportError(Exception):
    """The request got no HTTP reply: refused or dropped connection, timeout. Always retryable."""


class BadReply(Exception):
    """A reply came that no retry can fix: larger than the cap, an event stream, not JSON.

    ``kind`` becomes the failed trace's ``error:<kind>``; the message is the trace's one-line reason.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


DEFAULT_MAX_REPLY_MB = 16.0  # n=128 samples of 32k tokens fit; in memory at worst: concurrency x this


class Transport(Protocol):
    async def post(self, body: bytes) -> HttpReply:
        """POST a JSON body to the chat-completions endpoint; raise TransportError when no reply came,
        BadReply when the one that came cannot be used."""
        ...


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an HTTP date)."""
    millis, value = headers.get("retry-after-ms"), headers.get("retry-after")
    with contextlib.suppress(ValueError):
        if millis:
            return max(0.0, float(millis) / 1000)
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class AiohttpTransport:
    """One pooled aiohttp session: keep-alive connections, at most ``connections`` at once."""

    def __init__(
        self, session: object, url: str, headers: dict[str, str], timeout: object, max_reply_bytes: int | None = None
    ):
        self._session = session
        self._url = url
        self._headers = headers
        self._timeout = timeout  # total: a reply that never ends (an endless stream) times out too
        self._max_reply_bytes = max_reply_bytes or int(DEFAULT_MAX_REPLY_MB * 2**20)

    async def post(self, body: bytes) -> HttpReply:
        import aiohttp

        try:
            async with self._session.post(  # type: ignore[attr-defined]
                self._url, data=body, headers=self._headers, timeout=self._timeout
            ) as reply:
                data = await self._read(reply)
                retry_after = parse_retry_after(reply.headers) if reply.status >= 400 else None
                return HttpReply(reply.status, data, retry_after)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise TransportError(f"{type(error).__name__}: {error}".rstrip(": ")) from None

    async def _read(self, reply: aiohttp.ClientResponse) -> bytes:
        """The whole body, never more than the cap in memory; a stream we did not ask for is refused unread."""
        cap, length = self._max_reply_bytes, reply.content_length
        if reply.content_type == "text/event-stream":
            reply.close()  # drop the connection: the stream may never end
            raise BadReply("event_stream", "the server answered with an event stream, but no streaming was asked")
        chunks, size = [], 0
        if length is not None and "Content-Encoding" not in reply.headers:  # the length is what we would hold
            if length <= cap:
                return await reply.read()  # the common case, in one read
            size = length
        else:  # chunked, or compressed (a small body may inflate to gigabytes): count what comes out
            async for chunk in reply.content.iter_chunked(1 << 20):
                size += len(chunk)
                if size > cap:
                    break
                chunks.append(chunk)
        if size > cap:
            reply.close()
            raise BadReply("too_large", f"the reply is larger than {cap / 2**20:g} MiB (max_reply_mb); it was not read")
        return b"".join(chunks)


@asynccontextmanager
async def open_aiohttp(
    url: str,
    api_key: str | None,
    connections: int,
    timeout_s: float,
    connect_timeout_s: float,
    max_reply_mb: float = DEFAULT_MAX_REPLY_MB,
) -> AsyncIterator[AiohttpTransport]:
    """A transport for the life of one build; closes its connections on exit."""
    import aiohttp

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
        yield AiohttpTransport(session, url, headers, timeout, int(max_reply_mb * 2**20))
