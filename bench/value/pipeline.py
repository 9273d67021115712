"""tracebank pipeline steps shared by both arms of bench/curation_value.py: import, release, greedy eval, cards.

Everything goes through tracebank's own functions: ``import_data`` (rows written to a JSONL file in
the work directory first, so the import reads a file like any other), ``releases.curate`` with a
policy, ``evaluate`` for greedy completions (stored in the ``evals`` table, read back from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tracebank import catalog
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.train.evaluate import EvalConfig, EvalResult, evaluate, wilson_interval

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = {  # "raw": every teacher trace that has text, truncated and wrong ones included
    "name": "raw-everything",
    "rules": [{"name": "failed", "when": "rationale IS NULL OR finish_reason = 'error'", "action": "drop"}],
    "splits": {"train": 1.0},
}

COMPLETIONS_SQL = """
SELECT e.prompt_id, e.completion, e.correct, p.messages[1].content AS question, p.reference, p.split_hint
FROM evals e JOIN prompts p USING (prompt_id) WHERE e.eval_run = ? ORDER BY e.prompt_id
"""


@dataclass(frozen=True)
class Rate:
    """k of n with its 95% Wilson interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def __str__(self) -> str:
        low, high = self.interval()
        return f"{100 * self.value:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({self.k}/{self.n})"

    def overlaps(self, other: Rate) -> bool:
        (a, b), (c, d) = self.interval(), other.interval()
        return a <= d and c <= b


def import_rows(location: catalog.CatalogLocation, work: Path, dataset: str, name: str, rows: list[dict],
                column_map: str, split_hint: str) -> None:  # fmt: skip
    """Write ``rows`` to ``work/<name>.jsonl`` and import them with ``column_map``."""
    path = work / f"{name}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    import_data(location, ImportConfig(str(path), dataset, ColumnMap.parse(column_map), split_hint=split_hint))


def release(location: catalog.CatalogLocation, dataset: str, policy: dict, message: str) -> tuple[str, int]:
    """Curate ``dataset`` with ``policy``; returns the release ref and how many traces it kept."""
    result = releases.curate(location, dataset, Policy.from_dict(policy), orjson.dumps(policy).decode(), message)
    kept = sum(c["n"] for c in result.counts if c["keep"])
    return f"{dataset}@v{result.version}", kept


def policy_file(name: str, splits: dict[str, float] | None = None) -> dict:
    """A policy from recipes/policies, every kept trace in ``train`` (held-out prompts are imported apart)."""
    policy, _ = Policy.load(ROOT / "recipes" / "policies" / f"{name}.yaml")
    return {**policy.as_dict(), "splits": splits or {"train": 1.0}}


def greedy(location: catalog.CatalogLocation, student: str, dataset: str, split_hint: str, limit: int,
           max_new_tokens: int, teacher: Any = None) -> tuple[EvalResult, list[dict]]:  # fmt: skip
    """Greedy completions of ``student`` on a split hint's prompts, verified, and the rows stored for them."""
    cfg = EvalConfig(student, dataset=dataset, split_hint=split_hint, limit=limit, max_new_tokens=max_new_tokens,
                     batch_size=20)  # fmt: skip
    result = evaluate(location, cfg, teacher)
    with catalog.Catalog(location) as cat:
        rows = cat.arrow(COMPLETIONS_SQL, [result.eval_run]).to_pylist()
    return result, rows


def kept_by_release(location: catalog.CatalogLocation, dataset: str, version: int) -> list[dict]:
    """Every trace of ``dataset`` with its decision in release ``version`` and the meta it was imported with."""
    with catalog.Catalog(location) as cat:
        return cat.arrow(
            "SELECT t.trace_id, t.meta, t.finish_reason, d.keep, d.rule FROM traces t JOIN decisions d USING (trace_id) "
            "WHERE d.dataset = ? AND d.version = ? ORDER BY t.trace_id",
            [dataset, version],
        ).to_pylist()
