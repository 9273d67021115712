"""Correctness: does the trace's final answer match the prompt's reference?

Uses the prompt's task spec (``tracebank.tasks``): the same ``parse`` and ``verify`` that the
builders store and student evaluation uses — math answers compared as numbers or, where not
plain numbers, with math-verify in worker processes; code run against its tests in a sandbox.
Costly verdicts are cached by a hash of their inputs, so a rerun re-executes only what changed.

Metrics: ``correct`` (0/1; null when unjudged), ``extracted`` (the math answer found), ``expected``
(the reference's answer), ``detail`` (how it was decided, or why it failed: the first failing
assertion, the error, what the sandbox refused). Reasons: ``correct``, ``mismatch``,
``no_answer``, ``no_rationale`` (the request failed), ``no_reference`` (passed is null),
``parse_error``, ``timeout``, and for code ``assertion_failed``, ``runtime_error``,
``memory_limit``, ``sandbox_violation``, ``crashed`` (see ``tracebank.tasks.base.REASONS``).
"""

from __future__ import annotations

import pyarrow as pa

from tracebank.tasks import get_task
from tracebank.tasks.base import Verdict

SCHEMA = pa.schema([
    ("trace_id", pa.string()), ("correct", pa.int8()), ("extracted", pa.string()), ("expected", pa.string()),
    ("detail", pa.string()), ("passed", pa.bool_()), ("reason", pa.string()),
])  # fmt: skip
EXTRACTED_MAX = 200  # characters of an extracted answer kept (a program is in traces.answer)


class Correctness:
    name = "correctness"
    version = "2"
    reads = ("trace_id", "task", "rationale", "reference")

    def score(self, table: pa.Table) -> pa.Table:
        ids, tasks, rationales, references = (table.column(c).to_pylist() for c in self.reads)
        verdicts: list[Verdict | None] = [None] * len(ids)
        answers: list[str | None] = [None] * len(ids)
        for task_name in dict.fromkeys(tasks):  # one batch per task: costly checks run in parallel
            task = get_task(task_name)
            rows = [i for i, t in enumerate(tasks) if t == task_name and rationales[i]]
            for i in rows:
                answers[i] = task.parse(rationales[i])
            for i, verdict in zip(rows, task.verify_many([(answers[i], references[i]) for i in rows]), strict=True):
                verdicts[i] = verdict
        rows = {name: [] for name in SCHEMA.names}
        for i, trace_id in enumerate(ids):
            verdict = verdicts[i] or Verdict(0, "no_answer")  # no rationale: the request failed
            reason = verdict.reason if rationales[i] else "no_rationale"
            answer = answers[i] if get_task(tasks[i]).votes else None  # a program stays in traces.answer
            rows["trace_id"].append(trace_id)
            rows["correct"].append(verdict.correct if rationales[i] else 0)
            rows["extracted"].append(answer[:EXTRACTED_MAX] if answer else None)
            rows["expected"].append(verdict.expected)
            rows["detail"].append(verdict.detail)
            rows["passed"].append(None if verdict.correct is None and rationales[i] else reason == "correct")
            rows["reason"].append(reason)
        return pa.table(rows, schema=SCHEMA)
