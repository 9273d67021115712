"""Does the closed loop help? Student accuracy per round, with 95% intervals, against its own baseline.

    .venv/bin/python bench/closed_loop.py [--prompts 8] [--heldout 8] [--rounds 2] [--steps 4]
                                          [--samples 2] [--max-new-tokens 96] [--catalog DIR]
    .venv/bin/python bench/closed_loop.py --smoke     # 2 prompts, 1 round, 1 step: to check it runs

Runs ``recipes/closed_loop.yaml`` through ``tracebank run`` on GSM8K (the local copy under the
shared data directory) with the embedded SmolLM2 as teacher and student: each round evaluates the
student on the pool of ``--prompts`` train prompts, sends its failures back to the teacher, curates
the verified-correct traces, fine-tunes the base student for ``--steps`` steps and evaluates it on
``--heldout`` test prompts. Prints, per round, the held-out accuracy with its 95% Wilson interval
(round 0 is the student before any round: the baseline, measured in the same run), the pool
accuracy the round started from, and the round's traces: how the scale was chosen is printed too.
A benchmark, not a test: on CPU the default scale takes minutes and its intervals are wide.
Goals (last; exit 1 on a miss) are about the loop, not the student, whose gain needs a scale CPU
cannot give: every round was evaluated on the held-out prompts, and every round is in the
catalog's round history with what it sent and got back.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import goals_table

from tracebank import catalog
from tracebank.loop.rounds import round_history
from tracebank.train.evaluate import wilson_interval

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "closed_loop.yaml"
DATASET = "gsm8k-loop"


def run_recipe(home: Path, args: argparse.Namespace) -> float:
    """``tracebank run`` the recipe at the chosen scale; returns its wall time in seconds."""
    settings = {"prompts": args.prompts, "heldout": args.heldout, "rounds": args.rounds, "sft_steps": args.steps,
                "samples": args.samples, "max_new_tokens": args.max_new_tokens}  # fmt: skip
    command = [sys.executable, "-m", "tracebank", "run", str(RECIPE), "--catalog", str(home)]
    for name, value in settings.items():
        command += ["--set", f"{name}={value}"]
    started = time.perf_counter()
    done = subprocess.run(command, text=True)
    if done.returncode != 0:
        sys.exit(f"the closed-loop recipe failed (exit {done.returncode}); its catalog is in {home}")
    return time.perf_counter() - started


def held_out(cat: catalog.Catalog) -> list[tuple[int, int, int]]:
    """(round, correct, judged) of the held-out evals, one per round, the latest of each."""
    return cat.con.execute(
        """SELECT round, count(*) FILTER (WHERE correct = 1), count(*) FILTER (WHERE correct IS NOT NULL)
           FROM evals WHERE dataset = ? AND split = 'test' AND round IS NOT NULL
           GROUP BY round, eval_run QUALIFY row_number() OVER (PARTITION BY round ORDER BY max(created_at) DESC) = 1
           ORDER BY round""",
        [DATASET],
    ).fetchall()


def report(home: Path, args: argparse.Namespace, seconds: float) -> int:
    with catalog.Catalog(catalog.locate(home)) as cat:
        rows, rounds = held_out(cat), {r["round"]: r for r in round_history(cat, DATASET)}
    device = "cuda" if _cuda() else "cpu"
    load = os.getloadavg()
    print(f"\nscale: {args.prompts} pool prompts (GSM8K train), {args.heldout} held-out prompts (GSM8K test), "
          f"{args.rounds} rounds, {args.samples} teacher samples per failed prompt, {args.max_new_tokens} new tokens, "
          f"{args.steps} SFT steps per round; teacher and student: the embedded SmolLM2-135M on {device}")  # fmt: skip
    print(
        f"wall time {seconds:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
    )
    print("\nround  held-out accuracy (95% CI)        pool accuracy at round start  failed  new traces  verified")
    baseline = None
    for number, correct, judged in rows:
        low, high = wilson_interval(correct, judged)
        accuracy = correct / judged if judged else 0.0
        baseline = accuracy if baseline is None else baseline
        held = f"{100 * accuracy:5.1f}% [{100 * low:5.1f}, {100 * high:5.1f}] ({correct}/{judged})"
        change = f"{100 * (accuracy - baseline):+5.1f} pts" if number else "baseline"
        pool = rounds.get(number)
        pool_text = (f"{100 * pool['accuracy']:5.1f}% [{100 * pool['ci_low']:5.1f}, {100 * pool['ci_high']:5.1f}]  "
                     f"{pool['prompts_failed']:6d}  {pool['traces_new']:10d}  {pool['traces_correct']:8d}"
                     if pool else "–")  # fmt: skip
        print(f"{number:5d}  {held}  {change:9s}  {pool_text}")
    evaluated = {number for number, _, judged in rows if judged}
    return goals_table([
        (f"the held-out prompts were judged at round 0 and after every round ({sorted(evaluated)})",
         evaluated >= set(range(args.rounds + 1))),
        (f"every round is in the round history ({sorted(rounds)})", set(rounds) >= set(range(1, args.rounds + 1))),
    ], smoke=args.smoke)  # fmt: skip


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="pool: GSM8K train prompts")
    parser.add_argument("--heldout", type=int, default=8, help="GSM8K test prompts for held-out accuracy")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="SFT steps per round")
    parser.add_argument("--samples", type=int, default=2, help="teacher traces per failed prompt")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="teacher and student tokens per answer")
    parser.add_argument("--catalog", type=Path, default=None, help="keep the catalog here (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="2 pool and 2 held-out prompts, 1 round of 1 step")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.heldout, args.rounds, args.steps, args.samples, args.max_new_tokens = 2, 2, 1, 1, 1, 16
    if args.catalog is not None:
        return report(args.catalog, args, run_recipe(args.catalog, args))
    with tempfile.TemporaryDirectory(prefix="tracebank-loop-") as tmp:
        home = Path(tmp) / "catalog"
        return report(home, args, run_recipe(home, args))


if __name__ == "__main__":
    sys.exit(main())
