"""``tracebank diff A B``: what changed between two releases, per split and per rule.

A row of a release is a kept trace. *Added* rows are kept in B but not in A (grouped by B's
split and the rule that kept them); *removed* rows were kept in A but not in B (grouped by A's
split and the rule that dropped them in B, or ``(absent)`` when B has no decision for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from tracebank import catalog as catalog_mod
from tracebank.curate.releases import ReleaseRef, resolve

CHANGES_SQL = """
WITH a AS (SELECT * FROM decisions WHERE dataset = $a_dataset AND version = $a_version),
     b AS (SELECT * FROM decisions WHERE dataset = $b_dataset AND version = $b_version)
SELECT 'added' AS change, b.split, b.rule, count(*) AS traces
FROM b LEFT JOIN a ON a.trace_id = b.trace_id
WHERE b.keep AND NOT coalesce(a.keep, false) GROUP BY ALL
UNION ALL
SELECT 'removed' AS change, a.split, coalesce(b.rule, '(absent)') AS rule, count(*) AS traces
FROM a LEFT JOIN b ON b.trace_id = a.trace_id
WHERE a.keep AND NOT coalesce(b.keep, false) GROUP BY ALL
ORDER BY change, split, rule
"""

FUNNEL_SQL = """
WITH a AS (SELECT split, rule, keep, count(*) AS n FROM decisions WHERE dataset = $a_dataset AND version = $a_version GROUP BY ALL),
     b AS (SELECT split, rule, keep, count(*) AS n FROM decisions WHERE dataset = $b_dataset AND version = $b_version GROUP BY ALL)
SELECT coalesce(a.split, b.split) AS split, coalesce(a.rule, b.rule) AS rule, coalesce(a.keep, b.keep) AS keep,
       coalesce(a.n, 0) AS before, coalesce(b.n, 0) AS after, coalesce(b.n, 0) - coalesce(a.n, 0) AS delta
FROM a FULL OUTER JOIN b ON a.split = b.split AND a.rule = b.rule AND a.keep = b.keep
ORDER BY split, keep DESC, rule
"""

MOVED_SQL = """
SELECT count(*) FROM decisions a JOIN decisions b ON a.trace_id = b.trace_id
WHERE a.dataset = $a_dataset AND a.version = $a_version AND b.dataset = $b_dataset AND b.version = $b_version
  AND a.split <> b.split
"""


@dataclass(frozen=True)
class ReleaseDiff:
    a: dict[str, Any]  # releases row of the older side
    b: dict[str, Any]
    changes: pl.DataFrame  # change, split, rule, traces
    funnel: pl.DataFrame  # split, rule, keep, before, after, delta
    moved: int  # traces whose split differs between the two

    @property
    def added(self) -> int:
        return int(self.changes.filter(pl.col("change") == "added")["traces"].sum())

    @property
    def removed(self) -> int:
        return int(self.changes.filter(pl.col("change") == "removed")["traces"].sum())


def diff(location: catalog_mod.CatalogLocation, a: ReleaseRef, b: ReleaseRef) -> ReleaseDiff:
    """Compare two releases (usually of one dataset); unknown datasets or versions are clear errors."""
    with catalog_mod.Catalog(location) as cat:
        release_a, release_b = resolve(cat, a), resolve(cat, b)
        bind = {
            "a_dataset": release_a["dataset"],
            "a_version": release_a["version"],
            "b_dataset": release_b["dataset"],
            "b_version": release_b["version"],
        }
        changes = pl.from_arrow(cat.con.execute(CHANGES_SQL, bind).to_arrow_table())
        funnel = pl.from_arrow(cat.con.execute(FUNNEL_SQL, bind).to_arrow_table())
        moved = int(cat.con.execute(MOVED_SQL, bind).fetchone()[0])
    return ReleaseDiff(release_a, release_b, changes, funnel, moved)
