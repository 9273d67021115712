"""``tracebank eval``: sample a student on held-out prompts and score it with the same verifier.

    tracebank eval --student .tracebank/models/gsm8k-v1-sft --release gsm8k@v1 --split test
    tracebank eval --student .tracebank/models/gsm8k-v1-sft --dataset gsm8k --split-hint test

Prompts come from a release's split (prompts with traces, assigned by the policy), or from a
dataset's prompts with a split hint (e.g. an imported test set that has no traces at all).

Greedy decoding by default. Accuracy comes with a 95% Wilson interval. Every completion and its
verdict lands in the ``evals`` table and the summary in ``runs``, so students stay comparable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from tracebank import catalog as catalog_mod
from tracebank import precision as precision_mod
from tracebank import provenance, records, ui
from tracebank.builders.base import SamplingParams, Teacher, make_teacher
from tracebank.builders.plans import plan_requests
from tracebank.curate.releases import ReleaseRef, resolve
from tracebank.errors import TracebankError, check_at_least
from tracebank.tasks import get_task

RELEASE_PROMPTS_SQL = """
SELECT DISTINCT p.prompt_id, p.task, p.messages, p.reference
FROM decisions d JOIN prompts p ON p.prompt_id = d.prompt_id
WHERE d.dataset = ? AND d.version = ? AND d.split = ?
ORDER BY p.prompt_id
"""
HINT_PROMPTS_SQL = """
SELECT prompt_id, task, messages, reference FROM prompts WHERE dataset = ? AND split_hint = ? ORDER BY prompt_id
"""


@dataclass(frozen=True)
class EvalConfig:
    student: str  # embedded model name, a trained model directory, or a cached hub id
    release: str | None = None  # DATASET@vN whose split to evaluate on ...
    split: str = "test"
    dataset: str | None = None  # ... or a dataset's prompts with this split hint
    split_hint: str | None = None
    limit: int | None = None  # the first N prompts (by prompt_id: a stable sample)
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    batch_size: int = 8
    round: int | None = None  # closed-loop round this eval belongs to (0: the student before any round)
    precision: str = "auto"  # the student's dtype for generation: auto | fp32 | bf16 | fp16 (tracebank.precision)

    def __post_init__(self) -> None:
        if (self.release is None) == (self.dataset is None) or (self.dataset is None) != (self.split_hint is None):
            raise TracebankError("evaluate on either --release DATASET@vN [--split S] or --dataset D --split-hint H")
        if self.release is not None:
            ReleaseRef.parse(self.release)
        check_at_least(self, 1, "limit", "max_new_tokens", "batch_size")
        check_at_least(self, 0, "round")
        precision_mod.check(self.precision)
        SamplingParams(self.temperature, 1.0, self.max_new_tokens)  # validates the sampling values


@dataclass(frozen=True)
class EvalResult:
    eval_run: str
    release: str
    split: str
    student: str
    prompts: int
    verified: int  # prompts whose answer the task could verify
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval: well-behaved for small n and for rates near 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _verify(rows: list[dict], prompts: list[dict]) -> None:
    """Set ``correct`` and ``reason`` on each row with its task's verifier, one batch per task."""
    by_task: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_task.setdefault(prompt["task"], []).append(index)
    for task_name, indices in by_task.items():
        pairs = [(rows[i]["answer"], prompts[i]["reference"]) for i in indices]
        for i, verdict in zip(indices, get_task(task_name).verify_many(pairs), strict=True):
            rows[i]["correct"], rows[i]["reason"] = verdict.correct, verdict.reason


def student_name(student: str) -> str:
    """How evals, runs and lineage name a student: a directory by its absolute path, else its name."""
    path = Path(student).expanduser()
    return str(path.absolute()) if path.is_dir() else student


def evaluate(location: catalog_mod.CatalogLocation, cfg: EvalConfig, teacher: Teacher | None = None) -> EvalResult:
    """Generate one answer per prompt of the split, verify it, store everything; ``teacher`` replaces the model in tests."""
    started_at, run_id = records.now(), provenance.new_run_id("eval")
    with catalog_mod.Catalog(location) as cat:
        if cfg.release is not None:
            release = resolve(cat, ReleaseRef.parse(cfg.release))
            dataset, version, split = release["dataset"], release["version"], cfg.split
            prompts = cat.arrow(RELEASE_PROMPTS_SQL, [dataset, version, split]).to_pylist()[: cfg.limit]
            name = f"{dataset}@v{version}"
        else:
            cat.require_dataset(cfg.dataset)
            dataset, version, split = cfg.dataset, None, cfg.split_hint
            prompts = cat.arrow(HINT_PROMPTS_SQL, [dataset, split]).to_pylist()[: cfg.limit]
            name = dataset
    if not prompts:
        raise TracebankError(f"{name} has no prompts in split {split!r}")
    student = student_name(cfg.student)
    requests = plan_requests(prompts, student, SamplingParams(cfg.temperature, 1.0, cfg.max_new_tokens), samples=1)
    options = {"batch_size": cfg.batch_size, "precision": cfg.precision}
    teacher = teacher or make_teacher("transformers", student, options)
    responses = {}
    with ui.progress("evaluating", total=len(requests)) as bar:
        for response in teacher.generate(requests):
            responses[response.key] = response
            bar.update(0, advance=1)
    now, rows = records.now(), []
    for prompt, request in zip(prompts, requests, strict=True):
        text = responses[request.key].text
        rows.append({
            "eval_run": run_id, "dataset": dataset, "version": version, "split": split, "student": student,
            "prompt_id": prompt["prompt_id"], "completion": text,
            "answer": get_task(prompt["task"]).parse(text) if text else None,
            "completion_tokens": responses[request.key].completion_tokens, "created_at": now, "round": cfg.round,
        })  # fmt: skip
    _verify(rows, prompts)
    verdicts = [r["correct"] for r in rows if r["correct"] is not None]
    correct = sum(verdicts)
    accuracy = correct / len(verdicts) if verdicts else 0.0
    low, high = wilson_interval(correct, len(verdicts))
    counters = {
        "prompts": len(rows),
        "verified": len(verdicts),
        "correct": correct,
        "accuracy": accuracy,
        "ci_low": low,
        "ci_high": high,
    }
    used = getattr(teacher, "precision", None)  # what `auto` chose, where the backend says
    config = {**asdict(cfg), **(used.record() if isinstance(used, precision_mod.Precision) else {}), "student": student}
    message = f"eval {Path(student).name} on {name} {split}"
    with catalog_mod.writing(location, message, {"stage": "eval", "run_id": run_id}) as writer:
        writer.insert("evals", records.to_table(rows, records.EVALS))
        writer.insert("runs", provenance.run_row(run_id, "eval", dataset, started_at, config, counters))
    return EvalResult(run_id, name, split, student, len(rows), len(verdicts), correct, accuracy, low, high)
