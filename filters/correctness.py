"""Correctness: does the trace's final answer match the prompt's reference?

Uses the prompt's task spec (``tracebank.tasks``): the same ``parse`` and ``is_correct`` that
the builders store and student evaluation uses. Reasons: ``correct``, ``mismatch``,
``no_answer`` (nothing extractable), ``no_rationale`` (the request failed), ``no_reference``
(no gold answer to compare with; passed is null).
"""

from __future__ import annotations

import pyarrow as pa

from tracebank.tasks import get_task


class Correctness:
    name = "correctness"
    version = "1"
    reads = ("trace_id", "task", "rationale", "reference")

    def score(self, table: pa.Table) -> pa.Table:
        rows = {"trace_id": [], "correct": [], "extracted": [], "passed": [], "reason": []}
        for trace_id, task_name, rationale, reference in zip(
            *(table.column(c).to_pylist() for c in self.reads), strict=True
        ):
            task = get_task(task_name)
            answer = task.parse(rationale) if rationale else None
            verdict = task.is_correct(answer, reference)
            if not rationale:
                reason = "no_rationale"
            elif verdict is None:
                reason = "no_reference"
            elif answer is None:
                reason = "no_answer"
            else:
                reason = "correct" if verdict else "mismatch"
            rows["trace_id"].append(trace_id)
            rows["correct"].append(verdict if rationale else 0)
            rows["extracted"].append(answer)
            rows["passed"].append(None if reason == "no_reference" else reason == "correct")
            rows["reason"].append(reason)
        return pa.table(rows, schema=pa.schema([
            ("trace_id", pa.string()), ("correct", pa.int8()), ("extracted", pa.string()),
            ("passed", pa.bool_()), ("reason", pa.string()),
        ]))  # fmt: skip
