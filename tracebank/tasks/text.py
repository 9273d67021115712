"""Free-form text tasks: no answer to extract and nothing to verify."""

from __future__ import annotations

from tracebank.tasks.base import Messages


class TextTask:
    name = "text"
    reads = ("messages",)
    writes = ()

    def render(self, messages: Messages) -> Messages:
        return [dict(m) for m in messages]

    def parse(self, text: str) -> str | None:
        return None

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        return None
