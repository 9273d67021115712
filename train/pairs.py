"""``tracebank pairs DATASET@vN``: preference pairs per prompt, as in ORPO-Distill.

Chosen: a kept, verified-correct teacher trace of the release. Rejected: a trace of the same
prompt whose answer the same verifier found wrong — from current student rollouts by default
(``rejected_from=("student",)``), optionally also wrong teacher traces. The margin is the
difference in verified correctness (1.0 for every correct-vs-wrong pair). Pairs are read from the
catalog as of the release's snapshot and stored in the ``pairs`` table (versioned like all data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

from tracebank import catalog as catalog_mod
from tracebank import provenance, records
from tracebank.curate.releases import ReleaseRef, resolve
from tracebank.errors import TracebankError, check_at_least
from tracebank.hashing import digest
from tracebank.importer import POLICIES

CANDIDATES_SQL = """
SELECT t.trace_id, t.prompt_id, t.policy, d.keep, s.value AS correct
FROM decisions d
JOIN traces t ON t.trace_id = d.trace_id
JOIN scores s ON s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct'
WHERE d.dataset = ? AND d.version = ? AND d.split = ? AND t.rationale IS NOT NULL AND s.value IS NOT NULL
ORDER BY t.prompt_id, t.trace_id
"""


@dataclass(frozen=True)
class PairsConfig:
    release: str  # DATASET@vN
    split: str = "train"
    max_per_prompt: int = 4
    rejected_from: tuple[str, ...] = ("student",)  # policies whose wrong traces may be rejected

    def __post_init__(self) -> None:
        ReleaseRef.parse(self.release)
        check_at_least(self, 1, "max_per_prompt")
        unknown = [p for p in self.rejected_from if p not in POLICIES]
        if not self.rejected_from or unknown:
            raise TracebankError(
                f"rejected_from must name policies among {', '.join(POLICIES)}, got {self.rejected_from}"
            )


@dataclass(frozen=True)
class PairsResult:
    release: str
    prompts: int  # prompts of the split with a scored trace
    prompts_paired: int
    pairs_new: int
    pairs_existing: int
    snapshot: int | None


def select_pairs(candidates: list[dict[str, Any]], cfg: PairsConfig) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Up to ``max_per_prompt`` (chosen, rejected) per prompt, spread over distinct traces first."""
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for row in candidates:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    pairs = []
    for rows in by_prompt.values():
        chosen = [r for r in rows if r["keep"] and r["policy"] == "teacher" and r["correct"] == 1]
        rejected = [r for r in rows if r["policy"] in cfg.rejected_from and r["correct"] == 0]
        pairs += [(chosen[i], rejected[j]) for i, j in _spread(len(chosen), len(rejected), cfg.max_per_prompt)]
    return pairs


def _spread(n_chosen: int, n_rejected: int, limit: int) -> list[tuple[int, int]]:
    """Up to ``limit`` index pairs, each time the one whose traces were used least so far (ties: lowest)."""
    left = set(product(range(n_chosen), range(n_rejected)))
    used_chosen, used_rejected = [0] * n_chosen, [0] * n_rejected
    picked = []
    while left and len(picked) < limit:
        i, j = min(left, key=lambda ij: (used_chosen[ij[0]] + used_rejected[ij[1]], ij))
        left.remove((i, j))
        used_chosen[i] += 1
        used_rejected[j] += 1
        picked.append((i, j))
    return picked


def build_pairs(location: catalog_mod.CatalogLocation, cfg: PairsConfig) -> PairsResult:
    started_at, run_id = records.now(), provenance.new_run_id("pairs")
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ReleaseRef.parse(cfg.release))
    name = f"{release['dataset']}@v{release['version']}"
    with catalog_mod.Catalog(location, snapshot=release["snapshot_id"]) as cat:
        candidates = cat.arrow(CANDIDATES_SQL, [release["dataset"], release["version"], cfg.split]).to_pylist()
    pairs = select_pairs(candidates, cfg)
    if not pairs:
        raise TracebankError(
            f"{name} has no pairs in split {cfg.split!r}: it needs, per prompt, a kept correct teacher trace and a "
            f"wrong {'/'.join(cfg.rejected_from)} trace. Sample the student (tracebank build {release['dataset']} "
            "--policy student --model STUDENT), score and curate, then pair the new release"
        )
    now = records.now()
    rows = [
        {
            "pair_id": digest("pair", c["trace_id"], r["trace_id"]), "dataset": release["dataset"],
            "version": release["version"], "split": cfg.split, "prompt_id": c["prompt_id"],
            "chosen_trace_id": c["trace_id"], "rejected_trace_id": r["trace_id"], "kind": f"teacher_vs_{r['policy']}",
            "margin": float(c["correct"] - r["correct"]), "run_id": run_id, "created_at": now,
        }
        for c, r in pairs
    ]  # fmt: skip
    table = records.to_table(rows, records.PAIRS)
    with catalog_mod.writing(location, f"pairs for {name}", {"stage": "pairs", "run_id": run_id}) as writer:
        existing = set(
            writer.arrow("SELECT pair_id FROM pairs WHERE dataset = ?", [release["dataset"]]).column(0).to_pylist()
        )
        new = table.filter([pair_id not in existing for pair_id in table.column("pair_id").to_pylist()])
        counters = {"pairs_new": new.num_rows, "pairs_existing": table.num_rows - new.num_rows}
        if new.num_rows:
            writer.insert("pairs", new)
            writer.insert(
                "runs", provenance.run_row(run_id, "pairs", release["dataset"], started_at, asdict(cfg), counters)
            )
    return PairsResult(
        name, len({c["prompt_id"] for c in candidates}), len({c["prompt_id"] for c, _ in pairs}),
        counters["pairs_new"], counters["pairs_existing"], writer.snapshot,
    )  # fmt: skip
