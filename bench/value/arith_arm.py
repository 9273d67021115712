"""Wrong answers, the second arm of bench/curation_value.py: raw vs correctness-curated arithmetic students.

The sloppy teacher of ``value_arith`` answers every train problem twice; its recordings are sent
through tracebank's replay backend (so truncated traces arrive with ``finish_reason: length``),
scored with ``correctness`` and ``exact_dup`` and released twice: ``raw`` (everything) and
``curated`` (``recipes/policies/correct-only.yaml``: no truncated, wrong or duplicate traces). Both
students start from the same randomly initialised weights and train the same steps.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.builders.transformers_backend import TransformersTeacher
from tracebank.filters.runner import ScoreConfig, score
from tracebank.train.sft import SFTConfig, train_sft
from value import arith as va
from value.pipeline import EVERYTHING, Rate, greedy, import_rows, policy_file, release

DATASET = "value-arith"
TEACHER = "sloppy-column-adder"
OPERANDS = re.compile(r"(\d{3}) \+ (\d{3})")


@dataclass
class ArithStudent:
    label: str
    trained: Any  # TrainResult
    accuracy: Rate | None = None
    by_case: dict[str, Rate] = field(default_factory=dict)  # has_ten / no_ten held-out problems


@dataclass
class ArithResult:
    teacher: Counter  # what the teacher did: correct, forgot_carry, slip, truncated
    traces: int
    kept: dict[str, int]
    curated_rules: Counter  # rule -> traces (the curated release's funnel)
    students: list[ArithStudent]


def prepare(location: catalog.CatalogLocation, work: Path, args: Any) -> tuple[list[tuple[int, int]], Counter]:
    """Import train and held-out problems, record and replay the teacher, score; returns held-out pairs."""
    train = va.problems(args.arith_train, args.seed + 1)
    held = va.problems(args.arith_heldout, args.seed + 2, exclude=set(train))
    for name, pairs, hint in (("arith-train", train, "train"), ("arith-heldout", held, "heldout")):
        rows = [{"question": va.question(a, b), "answer": str(a + b)} for a, b in pairs]
        import_rows(location, work, DATASET, name, rows, "prompt=question,reference=answer", hint)
    recorded = va.recordings(train, 2, args.seed + 3, va.TeacherMix())
    path = work / "arith-teacher-recordings.jsonl"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in recorded))
    cfg = BuildConfig(DATASET, backend="replay", model=TEACHER, samples=2, split_hint="train",
                      options={"path": str(path)})  # fmt: skip
    build(location, cfg)
    score(location, ScoreConfig(DATASET, filters=("correctness", "exact_dup")))
    return held, Counter(r["kind"] for r in recorded)


def _case(question: str) -> str:
    match = OPERANDS.search(question)
    return "has_ten" if match and va.has_ten(int(match.group(1)), int(match.group(2))) else "no_ten"


def measure(location: catalog.CatalogLocation, student: ArithStudent, held: int) -> None:
    path = str(student.trained.output_dir)
    teacher = TransformersTeacher(path, batch_size=100, precision="fp32")
    result, rows = greedy(location, path, DATASET, "heldout", held, 48, teacher)
    student.accuracy = Rate(result.correct, result.verified)
    for case in ("has_ten", "no_ten"):
        picked = [r for r in rows if _case(r["question"]) == case]
        student.by_case[case] = Rate(sum(1 for r in picked if r["correct"]), len(picked))


def run(location: catalog.CatalogLocation, work: Path, args: Any) -> ArithResult:
    held, teacher = prepare(location, work, args)
    raw_ref, raw_kept = release(location, DATASET, EVERYTHING, "raw: every teacher trace")
    curated_ref, curated_kept = release(location, DATASET, policy_file("correct-only"), "curated: correct-only")
    with catalog.Catalog(location) as cat:
        funnel = cat.arrow(
            "SELECT rule, count(*) AS n FROM decisions WHERE dataset = ? AND version = ? GROUP BY rule",
            [DATASET, int(curated_ref.rsplit("@v", 1)[1])],
        ).to_pylist()
    init = va.make_student(work / "models" / "arith-init", args.seed)
    common = {"student": str(init), "max_steps": args.arith_steps, "batch_size": 64, "learning_rate": args.arith_lr,
              "max_length": 128, "precision": "fp32", "seed": args.seed}  # fmt: skip
    students = []
    for label, ref in (("raw", raw_ref), ("curated (correct-only)", curated_ref)):
        out = work / "models" / f"arith-{label.split()[0]}"
        students.append(ArithStudent(label, train_sft(location, SFTConfig(release=ref, output_dir=str(out), **common))))
    for student in students:
        measure(location, student, len(held))
    return ArithResult(teacher, sum(teacher.values()), {"raw": raw_kept, "curated": curated_kept},
                       Counter({f["rule"]: f["n"] for f in funnel}), students)  # fmt: skip
