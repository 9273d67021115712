"""How well does the chunking filter find steps, and how well does it check their arithmetic?

    .venv/bin/python bench/chunk_quality.py [--train PATH] [--labeled PATH] [--limit N] [--embed-limit N]
    .venv/bin/python bench/chunk_quality.py --smoke      # 100 references, no embeddings: seconds

1. Boundaries: GSM8K reference solutions have one step per line. With the line breaks replaced by
   a space (and, separately, removed outright), the chunker's chunk starts are compared with the
   line starts: precision, recall and F1 (exact offsets), with embeddings off on every solution and
   on for the first ``--embed-limit``.
2. Wrong arithmetic steps on the labeled GPT-3 solutions: the reference labels come from the
   calculator annotations (``<<expr=result>>``: the expression's value against its result and the
   number written after it, checked exactly); the filter sees the solutions with the annotations
   removed, so only the prose is checked. Precision and recall of "has a wrong step", every
   disagreement, and how many ``is_correct=true`` solutions the filter flags on the full text.
3. False alarms on GSM8K train reference solutions (with and without annotations): every flag is
   printed, for a human to judge (some are real slips in the references).
4. Throughput of the filter in traces/s, with the load average when it ran.

Goals (last; exit 1 on a miss), from the run of 2026-12-08 (load 4-6; F1 0.972, recall 0.889, 0 of
147, 0.35%): boundary F1 >= 0.95 (line breaks replaced by a space, embeddings off); wrong-step
recall >= 0.8 on the prose; at most 1% of the is_correct=true solutions flagged; at most 1% of the
train references flagged.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
from machine import goals_table

os.environ["TRACEBANK_EMBEDDING_CACHE"] = "off"  # time the embedding, not the vector cache

from tracebank import sources
from tracebank.filters.chunking.chunking import Chunking, ChunkingOptions
from tracebank.filters.chunking.steps import ANNOTATION, annotation_steps

JOINERS = {"space": " ", "none": ""}


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def traces(texts: list[str], questions: list[str], correct: list[int | None] | None = None) -> pa.Table:
    n = len(texts)
    return pa.table({
        "trace_id": [f"t{i:06d}" for i in range(n)], "prompt_id": [f"p{i:06d}" for i in range(n)],
        "messages": [[{"role": "user", "content": q}] for q in questions], "rationale": texts,
        "correct": pa.array(correct or [None] * n, pa.int8()), "task": ["math"] * n,
    })  # fmt: skip


@dataclass
class Run:
    scores: dict[str, dict]  # trace_id -> its metrics
    chunks: dict[str, list[tuple[int, int]]]  # trace_id -> chunk spans
    seconds: float


def run(table: pa.Table, options: ChunkingOptions) -> Run:
    scorer = Chunking(options)
    started = time.perf_counter()
    result = scorer.score(table)
    seconds = time.perf_counter() - started
    spans: dict[str, list[tuple[int, int]]] = {}
    for row in scorer.outputs()["chunks"].select(["trace_id", "char_start", "char_end"]).to_pylist():
        spans.setdefault(row["trace_id"], []).append((row["char_start"], row["char_end"]))
    return Run({row["trace_id"]: row for row in result.to_pylist()}, spans, seconds)


def boundaries(lines: list[str], joiner: str) -> tuple[str, set[int]]:
    """The solution with its line breaks replaced by ``joiner``, and where each line after the first starts."""
    starts, position = set(), 0
    for line in lines[:-1]:
        position += len(line) + len(joiner)
        starts.add(position)
    return joiner.join(lines), starts


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def boundary_f1(rows: list[dict], joiner: str, options: ChunkingOptions) -> tuple[tuple[float, float, float], Run]:
    solutions = [[line.strip() for line in row["answer"].split("\n") if line.strip()] for row in rows]
    joined = [boundaries(lines, joiner) for lines in solutions]
    result = run(traces([text for text, _ in joined], [row["question"] for row in rows]), options)
    tp = fp = fn = 0
    for i, (_, gold) in enumerate(joined):
        found = {start for start, _ in result.chunks.get(f"t{i:06d}", [])[1:]}
        tp, fp, fn = tp + len(gold & found), fp + len(found - gold), fn + len(gold - found)
    return prf(tp, fp, fn), result


def labeled_solutions(rows: list[dict]) -> list[tuple[str, str, bool]]:
    """(question, solution, is_correct) of every model solution in labeled_solutions_dev.jsonl rows."""
    return [
        (row["question"], value["solution"], bool(value["is_correct"]))
        for row in rows
        for value in row.values()
        if isinstance(value, dict) and "solution" in value
    ]


def wrong_step_agreement(labeled: list[tuple[str, str, bool]], options: ChunkingOptions, show: int) -> list:
    gold = [any(not s.ok for s in annotation_steps(solution)) for _, solution, _ in labeled]
    stripped = traces([ANNOTATION.sub("", s) for _, s, _ in labeled], [q for q, _, _ in labeled])
    result = run(stripped, options)
    found = [result.scores[f"t{i:06d}"]["wrong_steps"] > 0 for i in range(len(labeled))]
    tp = sum(g and f for g, f in zip(gold, found, strict=True))
    fp = sum(f and not g for g, f in zip(gold, found, strict=True))
    fn = sum(g and not f for g, f in zip(gold, found, strict=True))
    precision, recall, f1 = prf(tp, fp, fn)
    print(f"\n## Wrong arithmetic steps: {len(labeled)} labeled solutions, {sum(gold)} with a wrong annotation")
    print(f"prose only (annotations removed): precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f} "
          f"(tp {tp}, fp {fp}, fn {fn})")  # fmt: skip
    shown = 0
    for i, (g, f) in enumerate(zip(gold, found, strict=True)):
        if g != f and shown < show:
            shown += 1
            step = result.scores[f"t{i:06d}"]["wrong_step"]
            print(f"  {'missed' if g else 'extra'}: {step or labeled[i][1][:160]!r}")
    full = traces([s for _, s, _ in labeled], [q for q, _, _ in labeled], [int(c) for _, _, c in labeled])
    scored = run(full, options).scores
    flagged = [scored[f"t{i:06d}"] for i in range(len(labeled)) if scored[f"t{i:06d}"]["wrong_steps"]]
    right = sum(1 for _, _, c in labeled if c)
    rawr = sum(1 for row in flagged if row["right_answer_wrong_step"])
    print(f"full text: {len(flagged)} solutions flagged; {rawr} of the {right} is_correct=true solutions flagged "
          f"(right_answer_wrong_step)")  # fmt: skip
    return [(f"wrong-step recall on the prose >= 0.8 ({recall:.3f})", recall >= 0.8),
            (f"at most 1% of the is_correct=true solutions flagged ({rawr} of {right})", rawr <= 0.01 * right)]  # fmt: skip


def false_alarms(rows: list[dict], options: ChunkingOptions, show: int) -> list:
    print(f"\n## Flags on {len(rows)} GSM8K train reference solutions")
    worst = 0.0
    for label, strip in (("with annotations", False), ("annotations removed", True)):
        texts = [ANNOTATION.sub("", row["answer"]) if strip else row["answer"] for row in rows]
        result = run(traces(texts, [row["question"] for row in rows]), options)
        flagged = [row for row in result.scores.values() if row["wrong_steps"]]
        checked = sum(row["checked_steps"] or 0 for row in result.scores.values())
        print(f"{label}: {len(flagged)} of {len(rows)} flagged ({len(flagged) / len(rows):.2%}), "
              f"{checked} steps checked, {len(rows) / result.seconds:.0f} traces/s")  # fmt: skip
        worst = max(worst, len(flagged) / len(rows))
        if strip:
            for row in flagged[:show]:
                print(f"  {row['wrong_step']!r}")
    return [(f"at most 1% of the train references flagged ({worst:.2%})", worst <= 0.01)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="GSM8K-format JSONL: question, answer (default: gsm8k/train)")
    parser.add_argument("--labeled", type=Path, help="labeled_solutions_dev.jsonl (default: the named source)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N reference solutions")
    parser.add_argument("--embed-limit", type=int, default=500, help="solutions chunked with embeddings on (0: none)")
    parser.add_argument("--show", type=int, default=40, help="disagreements and flags printed at most")
    parser.add_argument("--smoke", action="store_true", help="100 references, embeddings off")
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit, args.embed_limit = args.limit or 100, 0
    train = read_jsonl(args.train or sources.resolve("gsm8k/train"))[: args.limit]
    labeled = labeled_solutions(read_jsonl(args.labeled or sources.resolve("gsm8k/labeled_solutions_dev")))
    plain = ChunkingOptions(embeddings=False)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"\n## Step boundaries: {len(train)} reference solutions, line breaks replaced")
    goals = []
    for name, joiner in JOINERS.items():
        (p, r, f1), result = boundary_f1(train, joiner, plain)
        if name == "space":
            goals.append((f"boundary F1 >= 0.95, breaks replaced by a space, embeddings off ({f1:.3f})", f1 >= 0.95))
        print(f"by {name!r}, embeddings off: precision {p:.3f}, recall {r:.3f}, F1 {f1:.3f} "
              f"({len(train) / result.seconds:.0f} traces/s)")  # fmt: skip
        if args.embed_limit:
            subset = train[: args.embed_limit]
            (p, r, f1), result = boundary_f1(subset, joiner, ChunkingOptions())
            print(f"by {name!r}, embeddings on ({len(subset)} solutions): precision {p:.3f}, recall {r:.3f}, "
                  f"F1 {f1:.3f} ({len(subset) / result.seconds:.1f} traces/s)")  # fmt: skip
    goals += wrong_step_agreement(labeled, plain, args.show)
    goals += false_alarms(train, plain, args.show)
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return goals_table(goals, f"{len(train)} references, {len(labeled)} labeled solutions", args.smoke)


if __name__ == "__main__":
    sys.exit(main())
