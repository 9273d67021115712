"""Catalog at scale: SQL, curate and diff on N synthetic traces, against plain DuckDB on the raw Parquet.

    .venv/bin/python bench/catalog_scale.py                 # 1,000,000 traces (about 3 minutes on 2 cores)
    .venv/bin/python bench/catalog_scale.py --traces 100000
    .venv/bin/python bench/catalog_scale.py --smoke          # 2,000 traces, to check it runs

Builds a DuckLake catalog with N traces (4 per prompt) and their correctness and exact-duplicate
scores, then times, in the same run: a typical aggregate `tracebank sql` query, a full curate
(policy evaluation + release commit), and a diff of two releases, each next to the same query run
by plain DuckDB over the DuckLake data files read as raw Parquet. Targets (2 cores, 1M traces):
sql <= 2 s (in the API and as a CLI process), curate <= 60 s, the API's sql <= 1.5x plain DuckDB
(curate does more than the plain baseline, which only decides: it commits decisions, release
metrics and the release; its ratio is printed, not a goal).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from machine import goals_table, uptime

from tracebank import catalog, records
from tracebank.curate import releases
from tracebank.curate.diff import CHANGES_SQL, FUNNEL_SQL, MOVED_SQL, diff
from tracebank.curate.policy import Policy, decide
from tracebank.curate.releases import ReleaseRef

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILE = ROOT / "recipes" / "policies" / "correct-only.yaml"
AGGREGATE = """
SELECT t.model, t.strategy, round(avg(s.value), 4) AS pass_rate, count(*) AS traces
FROM scores s JOIN traces t ON t.trace_id = s.trace_id
WHERE s.metric = 'correct' AND t.dataset = 'scale'
GROUP BY ALL ORDER BY ALL
"""

# What each synthetic row holds, per table: column -> SQL over i (the row number). Columns left out
# are NULL; the statements are made from tracebank.records' schemas, so a column a table gains
# since is filled (NULL) or, when it may not be NULL, named in a clear error.
FILL: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("prompts", "range($prompts) r(i)", {
        "prompt_id": "md5('p' || i)", "dataset": "'scale'", "task": "'math'",
        "messages": "[{'role': 'user', 'content': 'Question ' || i || '?'}]", "reference": "'#### ' || (i % 97)",
        "source": "'synthetic'", "source_id": "i::VARCHAR", "imported_at": "now()",
    }),
    ("traces", "range($traces) r(i)", {
        "trace_id": "md5('t' || i)", "prompt_id": "md5('p' || (i // 4))", "dataset": "'scale'",
        "policy": "CASE WHEN i % 8 = 7 THEN 'student' ELSE 'teacher' END", "model": "'model-' || (i % 3)",
        "backend": "'synthetic'", "strategy": "['default', 'concise', 'verify'][1 + (i % 3)]",
        "sample_idx": "(i % 4)::INTEGER",
        "params": "{'temperature': 0.7, 'top_p': 0.95, 'max_new_tokens': 512, 'seed': i % 4}",
        "request_key": "md5('t' || i)",
        "rationale": "'Step one: compute ' || i || ' items. Step two: check the work carefully. ' "
                     "|| repeat('reasoning ', 15) || '#### ' || (i % 5)",
        "answer": "(i % 5)::VARCHAR", "finish_reason": "CASE WHEN i % 50 = 0 THEN 'length' ELSE 'stop' END",
        "prompt_tokens": "40", "completion_tokens": "120", "cost_usd": "0.0", "latency_s": "1.5",
        "build_run": "'synthetic-run'", "created_at": "now()",
    }),
    ("scores", "range($traces) r(i), (VALUES ('correct'), ('extracted')) m(metric)", {
        "trace_id": "md5('t' || i)", "dataset": "'scale'", "filter": "'correctness'", "metric": "m.metric",
        "value": "CASE WHEN m.metric = 'correct' THEN (i % 3 = 0)::INTEGER::DOUBLE END",
        "detail": "CASE WHEN m.metric = 'extracted' THEN (i % 5)::VARCHAR END", "passed": "i % 3 = 0",
        "reason": "CASE WHEN i % 3 = 0 THEN 'correct' ELSE 'mismatch' END", "filter_version": "'1'",
        "run_id": "'synthetic-score'", "scored_at": "now()",
    }),
    ("scores", "range($traces) r(i), (VALUES ('is_duplicate'), ('group_size')) m(metric)", {
        "trace_id": "md5('t' || i)", "dataset": "'scale'", "filter": "'exact_dup'", "metric": "m.metric",
        "value": "CASE WHEN m.metric = 'is_duplicate' THEN (i % 11 = 0)::INTEGER::DOUBLE "
                 "WHEN m.metric = 'group_size' THEN 1 END",
        "passed": "i % 11 <> 0", "reason": "CASE WHEN i % 11 = 0 THEN 'duplicate' ELSE 'unique' END",
        "filter_version": "'1'", "run_id": "'synthetic-score'", "scored_at": "now()",
    }),
)  # fmt: skip


def fill_statements(traces: int) -> list[str]:
    """One INSERT per FILL entry, every column of the table's schema in order."""
    statements = []
    for table, rows, values in FILL:
        schema = records.TABLES[table]
        unknown = sorted(set(values) - set(schema.names))
        required = [f.name for f in schema if not f.nullable and f.name not in values]
        if unknown or required:
            raise SystemExit(
                f"bench/catalog_scale.py: {table} has no column {unknown}"
                if unknown
                else f"bench/catalog_scale.py: {table}.{required[0]} may not be NULL: give it a value in FILL"
            )
        select = ", ".join(f"{values.get(f.name, 'NULL')} AS {f.name}" for f in schema)
        source = rows.replace("$prompts", str(traces // 4)).replace("$traces", str(traces))
        statements.append(f"INSERT INTO lake.{table} SELECT {select} FROM {source}")
    return statements


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fill(location: catalog.CatalogLocation, traces: int) -> None:
    catalog.init(location)
    with catalog.writing(location, f"synthetic {traces} traces") as writer:
        for statement in fill_statements(traces):
            writer.execute(statement)


def data_files(location: catalog.CatalogLocation) -> dict[str, list[str]]:
    """The Parquet files behind each table, as DuckLake lists them."""
    sql = "SELECT data_file FROM ducklake_list_files('lake', ?)"
    with catalog.Catalog(location) as cat:
        return {
            name: [r[0] for r in cat.con.execute(sql, [name]).fetchall()]
            for name in ("prompts", "traces", "scores", "decisions")
        }


def raw_parquet(files: dict[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB with one view per table over the DuckLake data files (the baseline)."""
    con = duckdb.connect()
    for name, paths in files.items():
        if paths:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({paths!r})")
    return con


def plain_curate(files: dict[str, list[str]], policy: Policy, out: Path) -> None:
    """The baseline curate: the same decisions over raw Parquet, written to a Parquet file."""
    con = raw_parquet(files)
    con.register("decided", decide(con, "scale", policy))
    con.execute(f"COPY decided TO '{out}' (FORMAT parquet)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="where to build the catalog (default: a temp dir, removed after)")
    parser.add_argument("--smoke", action="store_true", help="2,000 traces, to check it runs (goals not enforced)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.traces = 2_000
    if args.traces < 8:
        parser.error("--traces must be at least 8 (4 per prompt, teachers and a student)")
    work = args.dir or Path(tempfile.mkdtemp(prefix="tracebank-scale-"))
    location = catalog.locate(work / "catalog")
    print(f"uptime: {uptime()}")
    seconds, _ = timed(lambda: fill(location, args.traces))
    print(f"filled {args.traces:,} traces + {4 * args.traces:,} score rows in {seconds:.1f}s")

    policy, text = Policy.load(POLICY_FILE)
    capped = Policy.from_dict({**policy.as_dict(), "name": "capped", "max_per_prompt": 1})
    rows = []

    def api_query():
        with catalog.Catalog(location) as cat:
            return cat.sql(AGGREGATE)

    files = data_files(location)
    sql_s, _ = timed(api_query)
    cli = [sys.executable, "-m", "tracebank", "sql", AGGREGATE, "--catalog", str(location.home), "-f", "csv"]
    cli_s, _ = timed(lambda: subprocess.run(cli, check=True, capture_output=True))
    plain_sql_s, _ = timed(lambda: raw_parquet(files).execute(AGGREGATE).fetchall())
    rows.append(("sql aggregate (open + query)", sql_s, plain_sql_s, 2.0))
    rows.append(("sql aggregate (CLI process)", cli_s, plain_sql_s, 2.0))

    curate_s, first = timed(lambda: releases.curate(location, "scale", policy, text, "bench v1"))
    plain_curate_s, _ = timed(lambda: plain_curate(files, policy, work / "plain-decisions.parquet"))
    rows.append(("curate (decide, decisions, metrics)", curate_s, plain_curate_s, 60.0))
    releases.curate(location, "scale", capped, "capped", "bench v2")

    files = data_files(location)  # now with both releases' decisions
    diff_s, result = timed(lambda: diff(location, ReleaseRef.parse("scale@v1"), ReleaseRef.parse("scale@v2")))
    bind = {"a_dataset": "scale", "a_version": 1, "b_dataset": "scale", "b_version": 2}

    def plain_diff():
        con = raw_parquet(files)
        return (
            con.execute(CHANGES_SQL, bind).fetchall(),
            con.execute(FUNNEL_SQL, bind).fetchall(),
            con.execute(MOVED_SQL, bind).fetchall(),
        )

    plain_diff_s, _ = timed(plain_diff)
    rows.append(("diff v1 -> v2", diff_s, plain_diff_s, None))

    kept = sum(c["n"] for c in first.counts if c["keep"])
    print(f"release v1 kept {kept:,} of {args.traces:,}; diff: {result.added:,} added, {result.removed:,} removed\n")
    print(f"{'operation':36} {'tracebank':>10} {'plain duckdb':>13} {'ratio':>7} {'target':>8}")
    for name, ours, theirs, target in rows:
        print(
            f"{name:36} {ours:>9.2f}s {theirs:>12.2f}s {ours / theirs:>6.2f}x {'' if target is None else f'{target:.0f}s':>7}"
        )
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nuptime after: {uptime()}")
    goals = [(f"{name} <= {target:.0f} s", ours <= target) for name, ours, _, target in rows if target is not None]
    goals.append(
        (f"sql (open + query) vs plain DuckDB <= 1.5x ({sql_s / plain_sql_s:.2f}x)", sql_s <= 1.5 * plain_sql_s)
    )
    return goals_table(goals, f"{args.traces:,} traces; the targets are for 1,000,000 on 2 cores", args.smoke)


if __name__ == "__main__":
    raise SystemExit(main())
