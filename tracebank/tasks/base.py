"""The task contract: how a prompt becomes messages, and how a completion becomes an answer.

A task spec has two hooks, ``render`` and ``parse``, plus ``verify`` where answers can be
checked. Builders, the correctness filter and student evaluation all call the same spec, so
the rule that curated the data is the rule that evaluates the student. ``is_correct`` is
``verify(...).correct``: one rule, whatever calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]


def edit_last_user(messages: Messages, edit: Callable[[str], str]) -> Messages:
    """A copy of ``messages`` with ``edit`` applied to the last user turn's content."""
    rendered = [dict(m) for m in messages]
    last_user = max(i for i, m in enumerate(rendered) if m["role"] == "user")
    rendered[last_user]["content"] = edit(rendered[last_user]["content"])
    return rendered


# Why a verdict is what it is. ``correct`` passes; ``no_reference`` cannot be judged (correct is None).
REASONS = (
    "correct",
    "mismatch",  # an answer was found and differs from the reference
    "no_answer",  # nothing extractable in the trace
    "no_reference",  # no gold answer to compare with
    "parse_error",  # the answer or reference could not be parsed (math-verify, or code that does not compile)
    "timeout",  # the check ran out of time (math-verify, or code past its wall/CPU limit)
    "assertion_failed",  # code: a test assertion failed (the detail names it)
    "runtime_error",  # code: an exception before the tests finished (exiting counts)
    "memory_limit",  # code: MemoryError under the sandbox's address-space limit
    "sandbox_violation",  # code: it tried something the sandbox refuses (subprocess, socket, writes outside)
    "crashed",  # code: the process died without reporting (a signal, os._exit)
)


@dataclass(frozen=True)
class Verdict:
    correct: int | None  # 1, 0, or None when the task cannot verify
    reason: str  # one of REASONS
    expected: str | None = None  # the reference's answer, as compared
    detail: str | None = None  # how it was decided, or why it failed (first failing assertion, error)

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown verdict reason {self.reason!r}")
        if isinstance(self.correct, bool) or self.correct not in (0, 1, None):  # an int, as is_correct returns
            raise ValueError(f"correct must be 0, 1 or None, got {self.correct!r}")


class TaskSpec(Protocol):
    name: str
    reads: tuple[str, ...]  # prompt columns render() needs
    writes: tuple[str, ...]  # trace columns parse() fills
    votes: bool  # whether parsed answers are short values that can vote (self-consistency)

    def render(self, messages: Messages) -> Messages:
        """The chat messages to send for a prompt's stored messages."""
        ...

    def parse(self, text: str) -> str | None:
        """The final answer in a completion, or None when there is none."""
        ...

    def verify(self, answer: str | None, reference: str | None) -> Verdict:
        """Whether ``answer`` (a ``parse`` result) matches ``reference``, and why."""
        ...

    def verify_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[Verdict]:
        """``verify`` for many (answer, reference) pairs, in parallel where checks are costly."""
        ...

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        """1 if ``answer`` matches ``reference``, 0 if not, None when the task cannot verify."""
        ...

    def vote_key(self, answer: str | None) -> str | None:
        """A key equal for equivalent answers, for majority votes; None when answers cannot vote."""
        ...
