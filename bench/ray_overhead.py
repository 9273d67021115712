"""What scoring on Ray costs next to the local executor, on this machine, in the same run.

    .venv/bin/python bench/ray_overhead.py                          # 100k and 1M traces, correctness
    .venv/bin/python bench/ray_overhead.py --sizes 20000            # a quick run
    .venv/bin/python bench/ray_overhead.py --smoke                  # 2,000 traces, to check it runs
    .venv/bin/python bench/ray_overhead.py --filters correctness,links --cpus 2

Synthetic math traces (half right, one in ten with a link) are scored by the per-trace filters
twice: by the local executor (``filters.runner._run_scorers``, one process) and by Ray
(``filters.ray_exec.run_scorers_on_ray``: Parquet shards, ``read_parquet`` -> ``map_batches``) on
a loopback Ray of ``--cpus`` CPUs started once before the clocks (its start-up is printed apart;
both executors score 200 rows once first, so worker imports are outside the clocks).
Both clocks cover scoring only: the catalog read and commit are the same for both executors. The
two results are compared row for row. Prints seconds and the ratio ray/local per size, then the
goals (exit 1 on a miss): identical results at every size, and Ray at most 1.5x the local time at
the largest size (on one machine Ray can only add overhead; a ratio under 1 needs more cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
from machine import goals_table

from tracebank import provenance, ray_cluster, records
from tracebank.filters.ray_exec import run_scorers_on_ray
from tracebank.filters.runner import ScoreConfig, _run_scorers

WARMUP_ROWS = 200


def synthetic_inputs(n: int) -> pa.Table:
    """``n`` traces shaped like ``runner.INPUT_SQL`` rows: half answer right, one in ten cites a link."""
    a = [i % 1000 for i in range(n)]
    rationales = [
        f"Add {x} and {i % 7}, then take {i % 7} away again."
        + (" See https://example-math-help.com/tips." if i % 10 == 0 else "")
        + f"\n#### {x + i % 2}"
        for i, x in enumerate(a)
    ]
    return pa.table(
        {
            "trace_id": [f"t{i:08d}" for i in range(n)],
            "prompt_id": [f"p{x:04d}" for x in a],
            "task": ["math"] * n,
            "messages": pa.array([[{"role": "user", "content": f"What is {x} plus 0?"}] for x in a], records.MESSAGES),
            "rationale": rationales,
            "reference": [f"#### {x}" for x in a],
            "correct": pa.nulls(n, pa.int8()),
        }
    )


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("scored_at").sort(["trace_id", "filter", "metric"])


def run(sizes: list[int], filters: tuple[str, ...], cpus: int, address: str | None) -> list[tuple[int, float, bool]]:
    """(traces, Ray seconds / local seconds, identical) per size."""
    cfg = ScoreConfig("bench", filters, executor="ray", ray_address=address)
    scorers, run_id, started_at = cfg.scorers(), provenance.new_run_id("score"), records.now()
    started = time.perf_counter()
    with ray_cluster.session(address, cpus) as ray, tempfile.TemporaryDirectory(prefix="ray-bench-") as home:
        ray_cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"ray start-up {time.perf_counter() - started:.1f} s, {ray_cpus} CPUs; filters {', '.join(filters)}")
        warm_up = synthetic_inputs(WARMUP_ROWS)  # workers import the filters once, before any clock
        _run_scorers(scorers, warm_up, cfg, run_id, started_at)
        run_scorers_on_ray(scorers, warm_up, cfg, run_id, started_at, Path(home))
        print(f"{'traces':>10} {'local s':>9} {'ray s':>9} {'ray/local':>9}  identical")
        measured = []
        for n in sizes:
            inputs = synthetic_inputs(n)
            clock = time.perf_counter()
            local = _run_scorers(scorers, inputs, cfg, run_id, started_at)
            local_s, clock = time.perf_counter() - clock, time.perf_counter()
            on_ray = run_scorers_on_ray(scorers, inputs, cfg, run_id, started_at, Path(home))
            ray_s = time.perf_counter() - clock
            same = _sorted(local).equals(_sorted(on_ray))
            print(f"{n:>10,} {local_s:>9.2f} {ray_s:>9.2f} {ray_s / local_s:>9.2f}  {'yes' if same else 'NO'}")
            measured.append((n, ray_s / local_s, same))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated trace counts")
    parser.add_argument("--filters", default="correctness", help="per-trace filters, comma-separated")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray")
    parser.add_argument("--ray-address", default=None, help="a running Ray cluster instead of a local one")
    parser.add_argument("--smoke", action="store_true", help="2,000 traces, to check it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes = "2000"
    measured = run([int(s) for s in args.sizes.split(",")], tuple(args.filters.split(",")), args.cpus, args.ray_address)
    n, ratio, _ = measured[-1]
    return goals_table([
        ("Ray stores the local executor's scores, row for row, at every size", all(same for *_, same in measured)),
        (f"Ray at most 1.5x the local time on one machine at {n:,} traces ({ratio:.2f}x)", ratio <= 1.5),
    ], smoke=args.smoke)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
