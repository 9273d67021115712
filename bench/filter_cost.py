"""What each registered filter costs, for the filter reference (docs/reference/filter_costs.json).

    .venv/bin/python bench/filter_cost.py            # 100 and 200 real traces per filter, ~10 minutes on 2 cores
    .venv/bin/python bench/filter_cost.py --smoke    # 8 and 16 traces, two filters, one run each: to check it runs

Every filter runs as a user runs it, ``tracebank score DATASET --filter NAME`` in its own process with
the verdict and embedding caches off, on two datasets of real traces (the labeled GPT-3 GSM8K
solutions: the first N and the first 2N), so the difference is what the traces cost and the rest is
what a run costs once (Python, the model load, the catalog): seconds per 1k traces is the slope,
``load`` the intercept. Metrics and reasons are the ones the filter stored for the larger dataset.
The baseline is ``exact_dup``, measured in the same run: each filter's slope is also printed as a
multiple of it. The goals table comes last; the run exits 1 when a filter failed or was not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from machine import goals_table, uptime

from tracebank import catalog
from tracebank.filters.runner import FILTERS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference" / "filter_costs.json"
LABELED = ROOT.parent / "shared" / "data" / "gsm8k" / "labeled_solutions_dev.jsonl"
BASELINE = "exact_dup"


def tracebank(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRACEBANK_CATALOG": str(home), "TRACEBANK_VERDICT_CACHE": "off",
           "TRACEBANK_EMBEDDING_CACHE": "off"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "tracebank", *args], env=env, capture_output=True, text=True)


def timed_score(name: str, dataset: str, home: Path, runs: int = 3, quick: float = 10.0) -> float:
    """Seconds of ``tracebank score``; a run under ``quick`` seconds is repeated up to ``runs`` times in
    all and the fastest kept (the first run stores the scores, the repeats rescore and store nothing new)."""
    best = float("inf")
    for attempt in range(runs):
        started = time.perf_counter()
        done = tracebank("score", dataset, "--filter", name, home=home)
        if done.returncode != 0:
            raise RuntimeError(f"{name} on {dataset}: {done.stderr.strip().splitlines()[-1:]}")
        best = min(best, time.perf_counter() - started)
        if attempt == 0 and best >= quick:
            break
    return best


def stored(name: str, dataset: str, home: Path) -> tuple[list[str], list[str]]:
    with catalog.Catalog(catalog.locate(home)) as cat:
        metrics = [
            r[0]
            for r in cat.con.execute(
                "SELECT DISTINCT metric FROM scores WHERE filter = ? AND dataset = ? ORDER BY 1", [name, dataset]
            ).fetchall()
        ]
        reasons = [
            r[0]
            for r in cat.con.execute(
                "SELECT DISTINCT reason FROM scores WHERE filter = ? AND dataset = ? ORDER BY 1", [name, dataset]
            ).fetchall()
        ]
    return metrics, [r for r in reasons if r is not None]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=25, help="labeled questions in the small dataset (4 traces each)")
    parser.add_argument("--filters", default=",".join(FILTERS), help="comma-separated filter names (default: all)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a new one under /tmp)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes (--smoke: not written unless given)")
    parser.add_argument("--runs", type=int, default=3, help="runs of a quick (<10 s) score, the fastest kept")
    parser.add_argument(
        "--smoke", action="store_true", help="2 and 4 questions, exact_dup and correctness, one run each"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.filters, args.runs = 2, f"{BASELINE},correctness", 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    names = [n.strip() for n in args.filters.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FILTERS))
    if unknown:
        parser.error(f"unknown filters {unknown}; registered: {', '.join(FILTERS)}")
    names = [BASELINE, *(n for n in names if n != BASELINE)]  # first: every ratio is against it
    if not LABELED.is_file():
        parser.error(f"needs {LABELED} (../shared/data beside the checkout)")
    work = args.dir or Path(subprocess.run(["mktemp", "-d", "/tmp/tracebank-filter-cost-XXXX"], capture_output=True,
                                           text=True, check=True).stdout.strip())  # fmt: skip
    home, load_before = work / "catalog", uptime()
    print(f"uptime: {load_before}\nwork dir: {work}")
    sizes = {"small": args.rows, "large": 2 * args.rows}
    for dataset, rows in sizes.items():
        done = tracebank("import", str(LABELED), "--dataset", dataset, "--limit", str(rows), "--map",
                         "prompt=question,reference=ground_truth,response=*.solution", home=home)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(done.stderr)
    with catalog.Catalog(catalog.locate(home)) as cat:
        traces = {d: cat.scalar("SELECT count(*) FROM traces WHERE dataset = ?", [d]) for d in sizes}
    print(f"traces: {traces['small']} and {traces['large']}\n")
    print(f"{'filter':18} {'small s':>8} {'large s':>8} {'s per 1k':>9} {'load s':>7} {'x ' + BASELINE:>12}")
    results, failed = {}, {}
    for name in names:
        try:
            small, large = (timed_score(name, d, home, args.runs) for d in ("small", "large"))
        except RuntimeError as error:
            failed[name] = str(error)
            print(f"{name:18} failed: {error}")
            continue
        per_trace = max(large - small, 0.0) / (traces["large"] - traces["small"])
        metrics, reasons = stored(name, "large", home)
        results[name] = {"seconds_per_1k": per_trace * 1000, "load_seconds": max(small - per_trace * traces["small"], 0.0),
                         "traces": traces["large"], "small_seconds": small, "large_seconds": large,
                         "metrics": metrics, "reasons": reasons}  # fmt: skip
        base = results.get(BASELINE, {}).get("seconds_per_1k")
        ratio = f"{results[name]['seconds_per_1k'] / base:11.1f}x" if base else f"{'-':>12}"
        print(f"{name:18} {small:8.1f} {large:8.1f} {per_trace * 1000:9.1f} {results[name]['load_seconds']:7.1f} "
              f"{ratio}", flush=True)  # fmt: skip
    load_after = uptime()
    print(f"\nuptime after: {load_after}")
    if not args.smoke or args.out != OUT:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": " ".join(["bench/filter_cost.py", *(sys.argv[1:] if argv is None else argv)]),
            "date": date.today().isoformat(), "machine": f"{os.cpu_count()} cores",
            "load": f"{load_before.split('load average: ')[-1]} before, {load_after.split('load average: ')[-1]} after",
            "data": f"the first {sizes['small']} and {sizes['large']} labeled GSM8K questions with their GPT-3 solutions "
                    f"({traces['small']} and {traces['large']} traces)",
            "filters": results,
        }, indent=1) + "\n")  # fmt: skip
        print(f"wrote {args.out}")
    return goals_table(
        [
            (f"every filter asked for ran ({len(results)} of {len(names)})", not failed),
            (f"the baseline {BASELINE} was measured", BASELINE in results),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
