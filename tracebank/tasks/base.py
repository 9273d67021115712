"""The task contract: how a prompt becomes messages, and how a completion becomes an answer.

A task spec has two hooks, ``render`` and ``parse``, plus ``is_correct`` where answers can be
verified. Builders, the correctness filter and student evaluation all call the same spec, so
the rule that curated the data is the rule that evaluates the student.
"""

from __future__ import annotations

from typing import Protocol

Messages = list[dict[str, str]]


class TaskSpec(Protocol):
    name: str
    reads: tuple[str, ...]  # prompt columns render() needs
    writes: tuple[str, ...]  # trace columns parse() fills

    def render(self, messages: Messages) -> Messages:
        """The chat messages to send for a prompt's stored messages."""
        ...

    def parse(self, text: str) -> str | None:
        """The final answer in a completion, or None when there is none."""
        ...

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        """1 if ``answer`` matches ``reference``, 0 if not, None when the task cannot verify."""
        ...
