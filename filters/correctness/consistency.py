"""Self-consistency: agreement with the majority answer over a prompt's samples (no gold needed).

For tasks with no reference answer, the answer most samples reach is the best available proxy
(Wang et al., 2022). Per prompt, the teacher traces vote (every trace votes when a prompt has no
teacher traces); answers are grouped by the task's ``vote_key`` (math: numeric value, so "18" and
"$18.00" are one vote). Every trace, student traces included, is compared with the majority.

Metrics: ``agrees`` (0/1), ``vote_share`` (the majority's votes over all voting samples, those
without an answer included), ``votes`` (voting samples), ``majority`` (the answer). Reasons:
``agrees``, ``disagrees``, ``no_answer`` (failed), and — unjudged, passed null — ``tie`` (no
single most common answer), ``single_sample`` (nothing to agree with), ``not_applicable``
(tasks whose answers cannot vote, such as code).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa

from tracebank.tasks import get_task

SCHEMA = pa.schema([
    ("trace_id", pa.string()), ("agrees", pa.int8()), ("vote_share", pa.float64()), ("votes", pa.int64()),
    ("majority", pa.string()), ("passed", pa.bool_()), ("reason", pa.string()),
])  # fmt: skip


def majority(keys: list[str | None]) -> tuple[str | None, float, bool]:
    """(most common key, its share of all votes, whether it is tied) over keys (None: no answer)."""
    counts = Counter(key for key in keys if key is not None)
    if not counts:
        return None, 0.0, False
    ranked = counts.most_common(2)
    tied = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
    return ranked[0][0], ranked[0][1] / len(keys), tied


class SelfConsistency:
    name = "self_consistency"
    version = "1"
    reads = ("trace_id", "prompt_id", "task", "policy", "rationale")

    def score(self, table: pa.Table) -> pa.Table:
        ids, prompts, tasks, policies, rationales = (table.column(c).to_pylist() for c in self.reads)
        keys = [
            get_task(t).vote_key(get_task(t).parse(r)) if r else None for t, r in zip(tasks, rationales, strict=True)
        ]
        members: dict[str, list[int]] = defaultdict(list)
        for i, prompt_id in enumerate(prompts):
            members[prompt_id].append(i)
        rows = {name: [] for name in SCHEMA.names}
        for group in members.values():
            voters = [i for i in group if policies[i] == "teacher"] or group
            winner, share, tied = majority([keys[i] for i in voters])
            for i in group:
                reason = self._reason(keys[i], winner, tied, len(voters), not get_task(tasks[i]).votes)
                rows["trace_id"].append(ids[i])
                rows["agrees"].append(int(keys[i] is not None and keys[i] == winner and not tied))
                rows["vote_share"].append(share)
                rows["votes"].append(len(voters))
                rows["majority"].append(None if tied else winner)
                rows["passed"].append({"agrees": True, "disagrees": False, "no_answer": False}.get(reason))
                rows["reason"].append(reason)
        return pa.table(rows, schema=SCHEMA)

    @staticmethod
    def _reason(key: str | None, winner: str | None, tied: bool, voters: int, cannot_vote: bool) -> str:
        if cannot_vote:
            return "not_applicable"
        if key is None:
            return "no_answer"
        if voters < 2:
            return "single_sample"
        if tied:
            return "tie"
        return "agrees" if key == winner else "disagrees"
