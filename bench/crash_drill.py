"""Crash drills at scale: kill -9 every stage of the real CLI at many seeded moments, rerun, compare.

    .venv/bin/python bench/crash_drill.py --drills 50 --seed 1
    .venv/bin/python bench/crash_drill.py --drills 1 --seed 17 --prompts 40     # reproduce one drill
    .venv/bin/python bench/crash_drill.py --smoke                               # one drill, 12 prompts

One reference pipeline (import, build, score, curate, publish, no kill) runs first against a
loopback stub teacher. Each drill then takes a fresh catalog through the same commands, SIGKILLs
every stage once at a moment drawn from its seed (the build half the time after a drawn number of
teacher replies, otherwise, like the other stages, at a drawn share of the reference run time),
reruns it and checks (tests/crash_util.py): the catalog equals the reference, no key twice, every
snapshot opens, no staged file left, the build's rerun sent exactly what the cache lacked, the
published folder equals the reference's (less the release's created_at and inputs_digest).
Prints pass counts per stage, every failure with the seed that reproduces it, and the Parquet
files that killed stages left unreferenced (DuckLake's uncommitted writes: disk, not data).
Goals (last): every drill passes, and every stage was killed in every drill; exit status 1 if not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.crash_util holds the drill itself

from machine import goals_table, uptime

from tests.crash_util import STAGES, drill, reference_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drills", type=int, default=50, help="drills to run (each kills every stage once)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first drill; drill i uses seed + i")
    parser.add_argument("--prompts", type=int, default=100, help="prompts in the dataset (2 traces each)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the catalogs here (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="one drill on 12 prompts")
    args = parser.parse_args(argv)
    if args.smoke:
        args.drills, args.prompts = 1, 12
    print(f"uptime: {uptime()}")
    with tempfile.TemporaryDirectory(prefix="crash-drill-") as tmp:
        workdir = args.workdir or Path(tmp)
        started = time.perf_counter()
        reference = reference_run(workdir, args.prompts)
        times = ", ".join(f"{stage} {s:.1f}s" for stage, s in reference.pipeline.seconds.items())
        print(f"reference run: {reference.requests} requests; {times}", flush=True)
        passed, killed, orphans, failures = defaultdict(int), defaultdict(int), defaultdict(int), []
        for seed in range(args.seed, args.seed + args.drills):
            for result in drill(workdir, seed, reference):
                passed[result.stage] += not result.problems
                killed[result.stage] += result.killed
                orphans[result.stage] += result.orphans
                if result.problems:
                    failures.append(result)
                    print(result.describe(), flush=True)
            print(f"drill seed {seed} done ({time.perf_counter() - started:.0f}s)", flush=True)
    print(f"\n{'stage':8} {'passed':>8} {'killed':>8} {'orphaned files':>15}")
    for stage in STAGES:
        print(f"{stage:8} {passed[stage]:>5}/{args.drills:<3} {killed[stage]:>7} {orphans[stage]:>15}")
    for failure in failures:
        print(f"FAILED {failure.describe()}  (reproduce: --drills 1 --seed {failure.seed} --prompts {args.prompts})")
    print(f"uptime after: {uptime()}")
    return goals_table([
        (f"every drill passes at every stage ({len(failures)} failures)", not failures),
        ("every stage was killed in every drill", all(killed[stage] == args.drills for stage in STAGES)),
    ], f"{args.drills} drills, {args.prompts} prompts")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
