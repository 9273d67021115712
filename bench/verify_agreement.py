"""How often does the correctness filter agree with human labels on real model solutions?

    .venv/bin/python bench/verify_agreement.py [--data PATH] [--repeat N]
    .venv/bin/python bench/verify_agreement.py --smoke     # 10 questions, to check it runs

Imports GSM8K's labeled_solutions_dev.jsonl (100 test questions x 4 GPT-3 solutions, each with an
``is_correct`` label) through ``tracebank import`` into a temporary catalog, scores it with the
correctness filter through ``tracebank score``, and prints the agreement with the labels, every
disagreement, and the throughput of the filter on those traces (scored ``--repeat`` times over).
A benchmark, not a test: it needs the local data file and prints numbers for a human to read.
Goals (last; exit 1 on a miss): agreement with the labels >= 97% and >= 1,000 traces/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
from machine import goals_table, uptime

from tracebank import catalog, sources
from tracebank.filters.correctness.correctness import Correctness
from tracebank.filters.runner import INPUT_SQL

DATASET = "gsm8k-labeled"
MAP = "prompt=question,reference=ground_truth,response=*.solution"


def tracebank(*args: str, catalog_dir: Path) -> None:
    command = [sys.executable, "-m", "tracebank", *args, "--catalog", str(catalog_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed:\n{done.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="labeled_solutions_dev.jsonl (default: the named source)")
    parser.add_argument("--repeat", type=int, default=25, help="score the traces this many times for the rate")
    parser.add_argument("--limit", type=int, default=None, help="only the first N labeled questions (4 traces each)")
    parser.add_argument("--smoke", action="store_true", help="10 questions, scored once for the rate")
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit, args.repeat = 10, 1
    data = Path(args.data) if args.data else sources.resolve("gsm8k/labeled_solutions_dev")
    print(f"uptime: {uptime()}")
    limit = ["--limit", str(args.limit)] if args.limit else []
    with tempfile.TemporaryDirectory(prefix="tracebank-bench-") as tmp:
        home = Path(tmp) / "catalog"
        tracebank("import", str(data), "--dataset", DATASET, "--map", MAP, *limit, catalog_dir=home)
        tracebank("score", DATASET, "--filter", "correctness", catalog_dir=home)
        with catalog.Catalog(catalog.locate(home)) as cat:
            rows = cat.sql(
                """
                SELECT t.source_id, t.model, t.meta, t.rationale, s.passed, s.reason,
                       max(e.detail) FILTER (WHERE e.metric = 'extracted') AS extracted,
                       max(e.detail) FILTER (WHERE e.metric = 'expected') AS expected
                FROM traces t
                JOIN scores s ON s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct'
                JOIN scores e ON e.trace_id = t.trace_id AND e.filter = 'correctness'
                WHERE t.dataset = ? GROUP BY ALL ORDER BY ALL
                """,
                [DATASET],
            ).to_dicts()
            inputs = cat.arrow(INPUT_SQL, [DATASET])
    agreement = report(sorted(rows, key=lambda r: (int(r["source_id"]), r["model"])))
    per_s = rate(inputs, args.repeat)
    return goals_table(
        [(f"agreement with the labels >= 97% ({agreement:.2%})", agreement >= 0.97),
         (f"correctness >= 1,000 traces/s in one process ({per_s:,.0f})", per_s >= 1000)],
        f"{len(rows)} traces", args.smoke,
    )  # fmt: skip


def report(rows: list[dict]) -> float:
    disagreements = [r for r in rows if bool(r["passed"]) != orjson.loads(r["meta"])["is_correct"]]
    agreed = len(rows) - len(disagreements)
    print(f"traces: {len(rows)}  agree with labels: {agreed}/{len(rows)} = {agreed / len(rows):.2%}")
    print(f"filter says correct: {sum(bool(r['passed']) for r in rows)}; "
          f"labels say correct: {sum(orjson.loads(r['meta'])['is_correct'] for r in rows)}")  # fmt: skip
    for r in disagreements:
        label = orjson.loads(r["meta"])["is_correct"]
        tail = r["rationale"].strip().splitlines()[-1][:100]
        print(f"  line {r['source_id']} {r['model']}: label={label} filter={r['reason']} "
              f"extracted={r['extracted']!r} expected={r['expected']!r} last line: {tail!r}")  # fmt: skip
    return agreed / len(rows)


def rate(inputs: pa.Table, repeat: int) -> float:
    table = pa.concat_tables([inputs] * repeat).select(list(Correctness.reads))
    started = time.perf_counter()
    Correctness().score(table)
    seconds = time.perf_counter() - started
    load = os.getloadavg()
    print(f"correctness filter: {table.num_rows} traces in {seconds:.2f} s = {table.num_rows / seconds:,.0f} traces/s "
          f"(one process; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores)")  # fmt: skip
    return table.num_rows / seconds


if __name__ == "__main__":
    sys.exit(main())
