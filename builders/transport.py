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
from typing import Protocol


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes
    retry_after_s: float | None = None  # what the server asked us to wait (Retry-After / retry-after-ms)


class TransportError(Exception):
    """The request got no HTTP reply: refused or dropped connection, timeout. Always retryable."""


class Transport(Protocol):
    async def post(self, body: bytes) -> HttpReply:
        """POST a JSON body to the chat-completions endpoint; raise TransportError when no reply came."""
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

    def __init__(self, session: object, url: str, headers: dict[str, str], timeout: object):
        self._session = session
        self._url = url
        self._headers = headers
        self._timeout = timeout

    async def post(self, body: bytes) -> HttpReply:
        import aiohttp

        try:
            async with self._session.post(  # type: ignore[attr-defined]
                self._url, data=body, headers=self._headers, timeout=self._timeout
            ) as reply:
                data = await reply.read()
                retry_after = parse_retry_after(reply.headers) if reply.status >= 400 else None
                return HttpReply(reply.status, data, retry_after)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise TransportError(f"{type(error).__name__}: {error}".rstrip(": ")) from None


@asynccontextmanager
async def open_aiohttp(
    url: str, api_key: str | None, connections: int, timeout_s: float, connect_timeout_s: float
) -> AsyncIterator[AiohttpTransport]:
    """A transport for the life of one build; closes its connections on exit."""
    import aiohttp

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
        yield AiohttpTransport(session, url, headers, timeout)
