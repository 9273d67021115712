"""Releases: a curated dataset version is one DuckLake snapshot plus a ``releases`` row.

``curate`` evaluates a policy inside the write transaction (so decisions and the snapshot they
describe are consistent), and makes no release when the same inputs and policy would give the
same decisions as the latest release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from tracebank import __version__, provenance, records
from tracebank import catalog as catalog_mod
from tracebank.curate import release_metrics
from tracebank.curate.policy import Policy, decide_sql, prepare
from tracebank.errors import TracebankError
from tracebank.hashing import canonical_json, digest

REF = re.compile(r"^(?P<dataset>[A-Za-z0-9][A-Za-z0-9_.-]*?)(?:@(?:v(?P<version>\d+)|(?P<latest>latest)))?$")

INPUT_TABLES = ("prompts", "traces", "scores")


def inputs_digest(con: duckdb.DuckDBPyConnection) -> str:
    """Digest of the Parquet data and delete files the release read.

    DuckLake files are immutable and uniquely named, and a change to any row writes a new file,
    so the file list identifies the inputs exactly, at a cost independent of the number of rows.
    """
    files = []
    for table in INPUT_TABLES:
        rows = con.execute("SELECT data_file, delete_file FROM ducklake_list_files('lake', ?)", [table]).fetchall()
        files.append([table, sorted((Path(data).name, Path(delete).name if delete else "") for data, delete in rows)])
    return digest(files)


@dataclass(frozen=True)
class ReleaseRef:
    dataset: str
    version: int | None  # None: the latest release

    @classmethod
    def parse(cls, text: str) -> ReleaseRef:
        """``DATASET@vN``, ``DATASET@latest`` or ``DATASET`` (latest)."""
        match = REF.match(text.strip())
        if not match:
            raise TracebankError(f"release {text!r}: expected DATASET@vN, e.g. gsm8k@v1")
        version = match.group("version")
        return cls(match.group("dataset"), int(version) if version else None)

    def __str__(self) -> str:
        return f"{self.dataset}@{'latest' if self.version is None else f'v{self.version}'}"


@dataclass(frozen=True)
class CurateResult:
    dataset: str
    version: int
    created: bool  # False: same decisions as the latest release, nothing written
    snapshot_id: int
    counts: list[dict[str, Any]]
    run_id: str
    unscored: dict[str, int]  # filter -> traces it has not scored (run `tracebank score` first)


def resolve(cat: catalog_mod.Catalog, ref: ReleaseRef) -> dict[str, Any]:
    """The releases row for ``ref``; unknown datasets and versions are clear errors."""
    cat.require_dataset(ref.dataset)
    versions = cat.sql("SELECT version FROM releases WHERE dataset = ? ORDER BY version", [ref.dataset])[
        "version"
    ].to_list()
    if not versions:
        raise TracebankError(
            f"dataset {ref.dataset!r} has no releases yet: run `tracebank curate {ref.dataset} --policy FILE`"
        )
    version = versions[-1] if ref.version is None else ref.version
    if version not in versions:
        raise TracebankError(
            f"{ref.dataset} has no version v{version}; versions: {', '.join(f'v{v}' for v in versions)}"
        )
    return cat.sql("SELECT * FROM releases WHERE dataset = ? AND version = ?", [ref.dataset, version]).row(
        0, named=True
    )


def versions(location: catalog_mod.CatalogLocation, dataset: str) -> pl.DataFrame:
    """All releases of ``dataset``, oldest first, with kept/dropped totals per release."""
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(dataset)
        return cat.sql(
            """
            SELECT version, created_at, snapshot_id, message, policy_name,
                   CAST(list_sum([c.n FOR c IN counts IF c.keep]) AS BIGINT) AS kept,
                   CAST(list_sum([c.n FOR c IN counts IF NOT c.keep]) AS BIGINT) AS dropped,
                   git_sha
            FROM releases WHERE dataset = ? ORDER BY version
            """,
            [dataset],
        )


# Over the temporary table of one curate run's decisions (see curate).
COUNTS_SQL = "SELECT split, rule, keep, count(*) AS n FROM _decided GROUP BY ALL ORDER BY split, rule, keep"
DECISIONS_DIGEST_SQL = """
SELECT lower(hex(coalesce(bit_xor(md5_number(concat_ws('|', trace_id, keep, rule, reason, split))), 0::UHUGEINT)))
FROM _decided
"""


def _decide_into_temp_table(
    con: duckdb.DuckDBPyConnection, dataset: str, policy: Policy
) -> tuple[int, pa.Table | None]:
    """Evaluate the policy into ``_decided`` (no round trip through Python).

    Returns its row count, and the embeddings a ``select`` policy computed for traces that had none.
    """
    try:
        ruled, new_vectors = prepare(con, dataset, policy)
        query, params = decide_sql(con, dataset, policy, ruled)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _decided AS {query}", params)
    except duckdb.Error as error:
        raise TracebankError(f"policy {policy.name!r}: {str(error).splitlines()[0]}") from None
    return int(con.execute("SELECT count(*) FROM _decided").fetchone()[0]), new_vectors


def _decisions_digest(con: duckdb.DuckDBPyConnection, policy: Policy) -> str:
    """Policy and decisions: equal digests mean a release would be identical (XOR of row MD5s: order-free, stable)."""
    return digest(canonical_json(policy.as_dict()).decode(), con.execute(DECISIONS_DIGEST_SQL).fetchone()[0])


UNSCORED_SQL = """
SELECT filter, (SELECT count(*) FROM traces WHERE dataset = $dataset) - count(DISTINCT trace_id) AS n
FROM scores WHERE dataset = $dataset GROUP BY filter HAVING n > 0 ORDER BY filter
"""


def _teachers(con: duckdb.DuckDBPyConnection, dataset: str) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT model FROM traces WHERE dataset = ? AND policy = 'teacher' ORDER BY 1", [dataset]
    )
    return [r[0] for r in rows.fetchall()]


def curate(
    location: catalog_mod.CatalogLocation, dataset: str, policy: Policy, policy_text: str, message: str
) -> CurateResult:
    """Decide keep/drop and split for every trace of ``dataset``; commit a new release if anything changed."""
    if not message.strip():
        raise TracebankError("a release needs a message (-m)")
    started_at, run_id = records.now(), provenance.new_run_id("curate")
    if not location.exists():
        catalog_mod.Catalog(location)  # raises the clear "no catalog" error
    with catalog_mod.writing(
        location, f"release {dataset}: {message}", {"stage": "curate", "run_id": run_id}
    ) as writer:
        con = writer.con
        if not con.execute("SELECT count(*) FROM prompts WHERE dataset = ?", [dataset]).fetchone()[0]:
            known = [r[0] for r in con.execute("SELECT DISTINCT dataset FROM prompts ORDER BY 1").fetchall()]
            raise TracebankError(
                f"unknown dataset {dataset!r}; datasets in {location.home}: {', '.join(known) or 'none'}"
            )
        decided, new_vectors = _decide_into_temp_table(con, dataset, policy)
        if decided == 0:
            raise TracebankError(f"dataset {dataset!r} has no traces to curate: run `tracebank build` or import traces")
        decisions_digest = _decisions_digest(con, policy)
        latest = con.execute(
            "SELECT version, decisions_digest, snapshot_id FROM releases WHERE dataset = ? ORDER BY version DESC LIMIT 1",
            [dataset],
        ).fetchone()
        counts = [
            dict(zip(("split", "rule", "keep", "n"), row, strict=True)) for row in con.execute(COUNTS_SQL).fetchall()
        ]
        unscored = dict(con.execute(UNSCORED_SQL, {"dataset": dataset}).fetchall())
        if latest and latest[1] == decisions_digest:
            return CurateResult(dataset, int(latest[0]), False, int(latest[2]), counts, run_id, unscored)
        version = (latest[0] if latest else 0) + 1
        writer.message = f"release {dataset}@v{version}: {message}"
        snapshot_id = writer.snapshot_before + 1  # the single writer's commit is the next snapshot
        con.execute(
            "INSERT INTO lake.decisions BY NAME SELECT ? AS dataset, ? AS version, trace_id, prompt_id, keep, rule, reason, split, rank FROM _decided",
            [dataset, version],
        )
        if new_vectors is not None and new_vectors.num_rows:
            writer.insert("embeddings", records.with_constants(new_vectors, dataset=dataset, run_id=run_id))
        writer.insert("metrics", release_metrics.compute(con, dataset, version))
        release = {
            "dataset": dataset, "version": version, "snapshot_id": snapshot_id, "message": message,
            "policy_name": policy.name, "policy": policy_text, "config": canonical_json(policy.as_dict()).decode(),
            "inputs_digest": inputs_digest(con),
            "decisions_digest": decisions_digest, "git_sha": provenance.git_sha(), "code_version": __version__,
            "teachers": _teachers(con, dataset), "counts": counts, "created_at": records.now(),
        }  # fmt: skip
        writer.insert("releases", records.to_table([release], records.RELEASES))
        counters = {f"{c['split']}_{c['rule']}_{'kept' if c['keep'] else 'dropped'}": c["n"] for c in counts}
        config = {"policy": policy.as_dict(), "message": message, "version": version}
        writer.insert("runs", provenance.run_row(run_id, "curate", dataset, started_at, config, counters))
    if writer.snapshot != snapshot_id:
        raise TracebankError(
            f"release {dataset}@v{version} committed as snapshot {writer.snapshot}, expected {snapshot_id}"
        )
    return CurateResult(dataset, version, True, snapshot_id, counts, run_id, unscored)
