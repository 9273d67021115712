"""Memorization risk: recall on planted copies and loops, false flags on real solutions, and speed.

Real traces: the 400 labeled GPT-3 GSM8K solutions (correct and wrong). Planted, one per labeled
question each: another question's reference pasted in, a GSM8K train reference pasted in, the
trace's own reference pasted in, a real solution's first line looped 8 times, and a real solution
followed by half of another question's reference. Sources: the 100 labeled questions with their
references plus GSM8K train (7,473 questions and references). The model part is off unless
``--perplexity`` (then a sample of 120 real and 20 of each planted kind, minutes on CPU).

Usage: .venv/bin/python bench/memorization_recall.py [--perplexity] [--data DIR]
       .venv/bin/python bench/memorization_recall.py --smoke     # 10 labeled questions, 200 train: seconds

Goals (last; exit 1 on a miss): no real correct solution flagged; at most 2% of the real wrong ones
(real loops are fair flags); every pasted reference and loop kind flagged >= 95%; a real solution
followed by half of another reference >= 70% (pastes under 20 words are let through by design).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
from machine import goals_table, uptime

from tracebank import records
from tracebank.filters.memorization.memorization import Memorization, MemorizationOptions

SOURCE_SCHEMA = pa.schema([("prompt_id", pa.string()), ("messages", records.MESSAGES), ("reference", pa.string()),
                           ("source", pa.string()), ("source_id", pa.string())])  # fmt: skip


def _read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def sources(labeled: list[dict], train: list[dict], data: Path) -> pa.Table:
    rows = [
        {
            "prompt_id": f"L{i}",
            "messages": _user(r["question"]),
            "reference": r["ground_truth"],
            "source": str(data / "labeled_solutions_dev.jsonl"),
            "source_id": str(i),
        }
        for i, r in enumerate(labeled)
    ]
    rows += [{"prompt_id": f"T{i}", "messages": _user(r["question"]), "reference": r["answer"],
              "source": str(data / "train.jsonl"), "source_id": str(i)} for i, r in enumerate(train)]  # fmt: skip
    return pa.Table.from_pylist(rows, SOURCE_SCHEMA)


def traces(labeled: list[dict], train: list[dict], rng: random.Random) -> list[tuple[str, int, str]]:
    """(kind, labeled question index, rationale): the real solutions, then every planted kind."""
    rows = [("real_correct" if v["is_correct"] else "real_wrong", i, v["solution"])
            for i, r in enumerate(labeled) for v in r.values() if isinstance(v, dict)]  # fmt: skip
    for i, r in enumerate(labeled):
        other = labeled[(i + 1 + rng.randrange(len(labeled) - 1)) % len(labeled)]
        half = other["ground_truth"].split("\n")
        rows += [
            ("copy_other_reference", i, other["ground_truth"]),
            ("copy_train_reference", i, train[rng.randrange(len(train))]["answer"]),
            ("copy_own_reference", i, r["ground_truth"]),
            ("loop", i, "\n".join([r["6b_finetuning"]["solution"].split("\n")[0]] * 8)),
            ("half_other_reference", i, r["175b_verification"]["solution"] + "\n" + "\n".join(half[: max(1, len(half) // 2)])),
        ]  # fmt: skip
    return rows


def sample(rows: list[tuple[str, int, str]], rng: random.Random) -> list[tuple[str, int, str]]:
    real = [r for r in rows if r[0].startswith("real")]
    kinds = sorted({r[0] for r in rows if not r[0].startswith("real")})
    return rng.sample(real, 120) + [r for kind in kinds for r in [p for p in rows if p[0] == kind][:20]]


GOALS = {"real_correct": (0.0, "at most"), "real_wrong": (0.02, "at most"), "copy_other_reference": (0.95, "at least"),
         "copy_train_reference": (0.95, "at least"), "copy_own_reference": (0.95, "at least"),
         "loop": (0.95, "at least"), "half_other_reference": (0.70, "at least")}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")
    parser.add_argument("--perplexity", action="store_true", help="also score perplexity (a sample; slow on CPU)")
    parser.add_argument("--smoke", action="store_true", help="10 labeled questions and 200 train ones")
    args = parser.parse_args(argv)
    print(f"uptime: {uptime()}")
    labeled, train = _read(args.data / "labeled_solutions_dev.jsonl"), _read(args.data / "train.jsonl")
    if args.smoke:
        labeled, train = labeled[:10], train[:200]
    rows = traces(labeled, train, random.Random(0))
    if args.perplexity:
        rows = sample(rows, random.Random(1))
    table = pa.table({
        "trace_id": [f"x{k}" for k in range(len(rows))],
        "prompt_id": [f"L{i}" for _, i, _ in rows],
        "messages": pa.array([_user(labeled[i]["question"]) for _, i, _ in rows], records.MESSAGES),
        "rationale": [text for _, _, text in rows],
    })  # fmt: skip
    scorer = Memorization(MemorizationOptions(perplexity=args.perplexity, max_tokens=256))
    started = time.perf_counter()
    scorer.use(sources(labeled, train, args.data))
    out = scorer.score(table).to_pylist()
    seconds = time.perf_counter() - started
    print(f"{len(rows)} traces against {len(labeled) + len(train)} prompts' questions and references: {seconds:.1f} s")
    print(f"{'kind':22} {'n':>4} {'flagged':>8} {'rate':>6} {'risk p50':>8} {'overlap p50':>11} {'zlib p10':>8}")
    rates = {}
    for kind in sorted({k for k, _, _ in rows}):
        got = [o for (k, _, _), o in zip(rows, out, strict=True) if k == kind]
        flagged = sum(not o["passed"] for o in got)
        rates[kind] = flagged / len(got)
        risk, overlap, zlib = (np.array([o[m] for o in got]) for m in ("risk", "overlap", "zlib_ratio"))
        print(f"{kind:22} {len(got):4} {flagged:8} {flagged / len(got):6.2f} {np.median(risk):8.3f} "
              f"{np.median(overlap):11.3f} {np.percentile(zlib, 10):8.3f}")  # fmt: skip
    for (kind, _, text), o in zip(rows, out, strict=True):
        if kind.startswith("real") and not o["passed"]:
            print(f"  flagged real trace ({kind}): {o['reason']} | {text[:90]!r}")
    goals = [
        (f"{kind} flagged {side} {target:.0%} ({rates[kind]:.1%})",
         rates[kind] <= target if side == "at most" else rates[kind] >= target)
        for kind, (target, side) in GOALS.items() if kind in rates
    ]  # fmt: skip
    return goals_table(goals, f"{len(rows)} traces", args.smoke)


if __name__ == "__main__":
    sys.exit(main())
