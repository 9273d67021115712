"""Task specs by name: the ``task`` column of a prompt is a key into :data:`TASKS`."""

from __future__ import annotations

from tracebank.errors import TracebankError
from tracebank.tasks.base import TaskSpec
from tracebank.tasks.code import CodeTask
from tracebank.tasks.math import MathTask
from tracebank.tasks.text import TextTask

TASKS: dict[str, TaskSpec] = {"math": MathTask(), "code": CodeTask(), "text": TextTask()}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise TracebankError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
