"""What a chat-completions reply means: classify its status, read the server's reason, split usage.

Pure functions of the reply (status and body), shared by the openai backend and its tests.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from tracebank.builders.budget import estimate_tokens
from tracebank.builders.transport import HttpReply

RETRYABLE = frozenset({408, 409, 425})
NON_RETRYABLE = frozenset({400, 413, 422})
_CONTEXT = re.compile(
    r"context (length|window)|maximum context|too many tokens|too long|max_model_len|reduce the length", re.I
)
_FILTER = re.compile(r"content[_ ](filter|policy|management)|safety system|flagged", re.I)


def classify(reply: HttpReply) -> tuple[str, str]:
    """(action, reason) for one reply: ok, retry, throttle, fail (non-retryable) or fatal (stop the run)."""
    status = reply.status
    if status == 200:
        return "ok", ""
    reason = error_message(reply.body) or f"HTTP {status}"
    if status == 429:
        return ("fatal" if "insufficient_quota" in reply.body.decode(errors="replace") else "throttle"), reason
    if status in RETRYABLE or status >= 500:
        return "retry", f"HTTP {status}: {reason}"
    if status in NON_RETRYABLE:
        return "fail", reason
    return "fatal", reason


def fail_kind(reply: HttpReply | None, reason: str) -> str:
    if (reply is not None and reply.status == 413) or _CONTEXT.search(reason):
        return "context_length"
    if _FILTER.search(reason):
        return "content_filter"
    return "bad_request"


def error_message(body: bytes) -> str:
    """The server's own words: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:500]
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or error.get("code")
            if message:
                return str(message)[:500]
        if isinstance(error, str):
            return error[:500]
        if "detail" in data:
            return str(data["detail"])[:500]
    return str(data)[:500]


def choice_text(choice: dict[str, Any]) -> str | None:
    """The completion, with the server's separate reasoning (vLLM, DeepSeek) in front as <think>...</think>."""
    message = choice.get("message") or {}
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        return f"<think>\n{reasoning}\n</think>\n\n{content or ''}"
    return content


def split_tokens(total: int | None, texts: list[str | None], finishes: list[str], cap: int) -> list[int]:
    """Per-choice completion tokens: ``usage`` counts all choices together, so split it.

    A choice cut at the limit (``length``) used exactly ``cap`` tokens; the rest is shared by
    text length, no share above ``cap``. Without usage, each text's own estimate.
    """
    estimates = [min(estimate_tokens(t), cap) for t in texts]
    if total is None:
        return estimates
    if len(texts) == 1:
        return [int(total)]
    shares = [cap if f == "length" else 0 for f in finishes]
    rest = int(total) - sum(shares)
    open_ = [i for i, f in enumerate(finishes) if f != "length"]
    while rest > 0 and open_:
        weights = {i: estimates[i] for i in open_} if any(estimates[i] for i in open_) else dict.fromkeys(open_, 1)
        weight, given = sum(weights.values()), 0
        for i in open_:
            add = min(cap - shares[i], rest * weights[i] // weight)
            shares[i] += add
            given += add
        if given == 0:  # rounding left a few: one each, in order, where there is room
            for i in open_[:rest]:
                shares[i] += 1
            given = min(rest, len(open_))
        rest -= given
        open_ = [i for i in open_ if shares[i] < cap]
    return shares
