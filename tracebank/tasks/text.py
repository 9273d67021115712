"""Free-form text tasks: no answer to extract and nothing to verify."""

from __future__ import annotations

from collections.abc import Sequence

from tracebank.tasks.base import Messages, Verdict


class TextTask:
    name = "text"
    reads = ("messages",)
    writes = ()
    votes = False

    def render(self, messages: Messages) -> Messages:
        return [dict(m) for m in messages]

    def parse(self, text: str) -> str | None:
        return None

    def verify(self, answer: str | None, reference: str | None) -> Verdict:
        return Verdict(None, "no_reference")

    def verify_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[Verdict]:
        return [self.verify(answer, reference) for answer, reference in pairs]

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        return None

    def vote_key(self, answer: str | None) -> str | None:
        return None
