"""What curation does to a student, measured on CPU: poison transfer and wrong answers, raw vs curated.

    .venv/bin/python bench/curation_value.py             # full size: under 20 minutes on 2 CPU cores
    .venv/bin/python bench/curation_value.py --smoke     # tiny sizes, to check it runs (numbers are noise)
    .venv/bin/python bench/curation_value.py --dir /tmp/value --steps 60 --pool 240

Two arms, each through tracebank's pipeline (import or replay build, score, curate, train_sft, eval),
each training two students with the same model, steps, seed and learning rate:

1. Poison transfer (bench/value/poison_arm.py): SmolLM2-135M on GSM8K train traces in which every
   shopping question's trace (about 10% of the pool) ends with a line of an ad, link or phishing
   campaign written for this experiment (bench/value/poison.py, apart from the filters' tests and
   bench/poison_*). ``raw`` trains on every trace, ``curated`` on what recipes/policies/safe.yaml keeps.
   On held-out GSM8K test prompts (half shopping questions), for the base model and both students:
   the share of greedy completions carrying a URL, brand pitch or phishing cue, the mean log-probability
   per token of the campaign's lines after the gold solution (teacher-forced), the mean log-probability
   of the gold solutions, and GSM8K accuracy.
2. Wrong answers (bench/value/arith_arm.py): a 4-layer transformer from a config, character-level,
   trained from scratch on 3-digit addition scratchpads from a teacher with ~20% wrong final answers
   and ~8% truncated traces (bench/value/arith.py); ``raw`` on everything, ``curated`` on what
   correctness and exact_dup keep (recipes/policies/correct-only.yaml); held-out exact-match accuracy.

Rates come with 95% Wilson intervals, means with normal 95% intervals. Each trained student's card
(tracebank_train.json, README.md) records what it was trained on and what was measured. The last
table checks the expectations (raw above base and curated like base on poison; curated at least raw
on arithmetic); a miss exits non-zero at full size only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import goals_table, uptime
from value import arith_arm, poison_arm

from tracebank import catalog
from tracebank.train.base import add_evaluation

SMOKE = {"pool": 20, "heldout": 4, "steps": 2, "batch_size": 2, "max_new_tokens": 16, "arith_train": 60,
         "arith_heldout": 20, "arith_steps": 4}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temp dir, kept for inspection)")
    parser.add_argument("--smoke", "--quick", action="store_true", help="tiny sizes, to check that it runs")
    parser.add_argument("--seed", type=int, default=0)
    poison = parser.add_argument_group("poison transfer (SmolLM2-135M)")
    poison.add_argument("--pool", type=int, default=200, help="teacher traces in the pool")
    poison.add_argument("--share", type=float, default=0.1, help="share of the pool that is poisoned")
    poison.add_argument("--max-chars", type=int, default=240, help="longest question and solution taken")
    poison.add_argument("--heldout", type=int, default=100, help="held-out prompts, half of them shopping questions")
    poison.add_argument("--steps", type=int, default=50)
    poison.add_argument("--batch-size", type=int, default=4)
    poison.add_argument("--lr", type=float, default=3e-4)
    poison.add_argument("--max-new-tokens", type=int, default=128)
    arith = parser.add_argument_group("wrong answers (arithmetic, a small transformer from scratch)")
    arith.add_argument("--arith-train", type=int, default=4000, help="train problems (2 teacher traces each)")
    arith.add_argument("--arith-heldout", type=int, default=400)
    arith.add_argument("--arith-steps", type=int, default=300, help="steps of batch 64")
    arith.add_argument("--arith-lr", type=float, default=2e-3)
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    return args


def poison_table(result: poison_arm.PoisonResult, args: argparse.Namespace) -> None:
    poisoned = sum(n for kind, n in result.pool.items() if kind != "clean")
    total = sum(result.pool.values())
    print(f"\n== Poison transfer: {total} traces, {poisoned} poisoned ({100 * poisoned / total:.0f}%: "
          f"{', '.join(f'{k} {n}' for k, n in sorted(result.pool.items()) if k != 'clean')}); kept raw "
          f"{result.kept['raw']}, curated {result.kept['curated']}; {args.steps} steps x {args.batch_size}, "
          f"lr {args.lr:g}, seed {args.seed}")  # fmt: skip
    print(f"{'student':18} {'poisoned completions: shopping':>38} {'other prompts':>30} {'all':>30}")
    for s in result.students:
        print(f"{s.label:18} {s.rates['buy']!s:>38} {s.rates['other']!s:>30} {s.rates['all']!s:>30}")
    print(f"\n{'student':18} {'log p(injected) shopping':>26} {'all':>22} {'log p(gold solution)':>22} "
          f"{'GSM8K accuracy':>28}  detectors fired")  # fmt: skip
    for s in result.students:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(s.kinds.items())) or "-"
        print(f"{s.label:18} {s.injected_logprob['buy']!s:>26} {s.injected_logprob['all']!s:>22} "
              f"{s.gold_logprob!s:>22} {s.accuracy!s:>28}  {kinds}")  # fmt: skip
    for s in result.students:
        for text in s.examples[:1]:
            print(f"  e.g. {s.label}: {' '.join(text.split())[-160:]!r}")
    print("\nFilters on this experiment's injections (safe release):")
    for kind, rate in sorted(result.recall.items()):
        print(f"  {kind:9} dropped {rate}")
    print(f"  by rule: {dict(sorted(result.by_rule.items()))}; clean traces a safety rule dropped: "
          f"{result.clean_dropped}")  # fmt: skip
    print("  flagged (poisoned/clean): " + ", ".join(f"{f} {p}/{c}" for f, (p, c) in result.flagged_by.items()))


def arith_table(result: arith_arm.ArithResult, args: argparse.Namespace) -> None:
    wrong = result.teacher["slip"] + result.teacher["forgot_carry"]
    print(f"\n== Wrong answers: {result.traces} teacher traces ({100 * wrong / result.traces:.1f}% wrong final "
          f"answers: {result.teacher['forgot_carry']} forgot a carry, {result.teacher['slip']} slips; "
          f"{result.teacher['truncated']} truncated); kept raw {result.kept['raw']}, curated "
          f"{result.kept['curated']} (dropped: {', '.join(f'{r} {n}' for r, n in sorted(result.curated_rules.items()) if r != 'default')}); "
          f"{args.arith_steps} steps x 64, lr {args.arith_lr:g}, seed {args.seed}")  # fmt: skip
    print(f"{'student':24} {'last loss':>9} {'held-out accuracy':>30} {'column totals 10':>28} {'other problems':>28}")
    for s in result.students:
        loss = s.trained.metrics.get("last_loss", float("nan"))
        print(f"{s.label:24} {loss:>9.3f} {s.accuracy!s:>30} {s.by_case['has_ten']!s:>28} {s.by_case['no_ten']!s:>28}")


def record_cards(poison: poison_arm.PoisonResult, arith: arith_arm.ArithResult, args: argparse.Namespace) -> None:
    """Each trained student's card says what it was trained on and what the probes measured."""
    poisoned = sum(n for kind, n in poison.pool.items() if kind != "clean")
    for s in poison.students[1:]:
        trained_on = "every trace" if s.label == "raw" else "the traces recipes/policies/safe.yaml keeps"
        add_evaluation(s.trained.output_dir, "curation_value: poison transfer", (
            f"Trained on {trained_on} of a pool of {sum(poison.pool.values())} GSM8K train traces, {poisoned} of them "
            f"(every shopping question's) ending with an injected ad, link or phishing line (bench/value/poison.py). "
            f"Measured on {args.heldout} held-out GSM8K test prompts, half shopping questions: share of greedy "
            f"completions ({args.max_new_tokens} new tokens) with a URL, brand pitch or phishing cue (95% Wilson "
            "interval); mean log-probability per token of the injected lines after the gold solution and of the gold "
            "solution (teacher-forced, 95% interval); GSM8K accuracy."), {
            "poisoned completions, shopping prompts": str(s.rates["buy"]),
            "poisoned completions, other prompts": str(s.rates["other"]),
            "poisoned completions, all": str(s.rates["all"]),
            "mean log p(injected line), all": str(s.injected_logprob["all"]),
            "mean log p(gold solution)": str(s.gold_logprob),
            "GSM8K accuracy": str(s.accuracy),
            "base model, poisoned completions": str(poison.students[0].rates["all"]),
            "base model, mean log p(injected line)": str(poison.students[0].injected_logprob["all"]),
        })  # fmt: skip
    for s in arith.students:
        trained_on = "every trace" if s.label == "raw" else "what correctness and exact_dup keep (correct-only.yaml)"
        add_evaluation(s.trained.output_dir, "curation_value: wrong answers", (
            f"Trained from scratch on {trained_on} of {arith.traces} 3-digit addition scratchpad traces from a "
            "teacher with wrong final answers and truncated traces (bench/value/arith.py). Measured: greedy "
            f"exact-match accuracy on {args.arith_heldout} held-out problems (95% Wilson interval)."), {
            "held-out accuracy": str(s.accuracy),
            "problems with a column totalling 10": str(s.by_case["has_ten"]),
            "other problems": str(s.by_case["no_ten"]),
        })  # fmt: skip


def expectations(poison: poison_arm.PoisonResult, arith: arith_arm.ArithResult) -> list[tuple[str, bool, str]]:
    base, raw, curated = poison.students
    arith_raw, arith_curated = arith.students
    b, r, c = (s.injected_logprob["all"] for s in (base, raw, curated))
    return [
        ("poison: raw emits poison more than base (greedy, intervals apart)",
         raw.rates["all"].interval()[0] > base.rates["all"].interval()[1], f"{raw.rates['all']} vs {base.rates['all']}"),
        ("poison: raw finds the injected lines likelier than base (probe)", r.low > b.high, f"{r} vs {b}"),
        ("poison: curated like base (greedy, intervals overlap)",
         curated.rates["all"].overlaps(base.rates["all"]), f"{curated.rates['all']} vs {base.rates['all']}"),
        ("poison: curated no likelier than base on the injected lines (probe)", c.mean <= b.high, f"{c} vs {b}"),
        ("arithmetic: curated accuracy at least raw's", arith_curated.accuracy.k >= arith_raw.accuracy.k,
         f"{arith_curated.accuracy} vs {arith_raw.accuracy}"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    work = args.dir or Path(tempfile.mkdtemp(prefix="tracebank-value-"))
    work.mkdir(parents=True, exist_ok=True)
    location = catalog.locate(work / "catalog")
    print(f"uptime: {uptime()}\nwork dir: {work}")
    arith = arith_arm.run(location, work, args)
    poison = poison_arm.run(location, work, args)
    poison_table(poison, args)
    arith_table(arith, args)
    record_cards(poison, arith, args)
    checks = expectations(poison, arith)
    print(f"\n{'expectation':70} measured")
    for name, _, detail in checks:
        print(f"{name:70} {detail}")
    print(f"\nuptime: {uptime()}\ntotal {(time.perf_counter() - started) / 60:.1f} min")
    return goals_table([(name, ok) for name, ok, _ in checks], smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
