"""Curation ablation: does a student trained on curated traces beat one trained on all of them?

    .venv/bin/python bench/curation_ablation.py                 # defaults: about 35 minutes on 2 CPU cores
    .venv/bin/python bench/curation_ablation.py --smoke         # a few minutes, to check it runs (numbers are noise)

One pool of teacher traces: the 400 real labeled GPT-3 solutions to GSM8K test questions 1-100 plus
local SmolLM2 teacher traces on GSM8K train prompts; the student (SmolLM2-135M) is also sampled on
the labeled questions for ORPO-Distill pairs. Trains briefly:
  (a) SFT on all teacher traces (the release keeps everything but student rollouts),
  (b) SFT on the curated split (verified-correct, unique, complete teacher traces),
  (c) (b) followed by ORPO on pairs of a correct teacher trace vs a wrong student rollout,
and evaluates the base model and each student with the same verifier on held-out GSM8K test
questions (101 onwards, never trained on). Prints accuracies with 95% Wilson intervals and saves
a loss/accuracy plot. At this scale differences are expected to be within noise; the table says so.
Goals (last; exit 1 on a miss) are about the harness: every arm trained on its release and every
arm, the base model included, was judged on the held-out questions. curation_value.py is where
curation's effect on a student is measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson
from machine import goals_table, uptime

from tracebank import catalog, sources
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.models import DEFAULT_MODEL
from tracebank.train.base import CARD_JSON
from tracebank.train.evaluate import EvalConfig, evaluate
from tracebank.train.pairs import PairsConfig, build_pairs
from tracebank.train.preference import PreferenceConfig, train_preference
from tracebank.train.sft import SFTConfig, train_sft

ROOT = Path(__file__).resolve().parents[1]
DATASET = "ablation"
ALL_TEACHER = {
    "name": "all-teacher-traces",
    "rules": [
        {"name": "student", "when": "policy = 'student'", "action": "drop"},
        {"name": "failed", "when": "rationale IS NULL OR finish_reason = 'error'", "action": "drop"},
    ],
    "splits": {"train": 1.0},
}


def prepare(location: catalog.CatalogLocation, args: argparse.Namespace) -> None:
    gold = ColumnMap.parse("prompt=question,reference=answer")
    labeled = ColumnMap.parse("prompt=question,reference=ground_truth,response=*.solution")
    import_data(
        location,
        ImportConfig(str(sources.resolve("gsm8k/labeled_solutions_dev")), DATASET, labeled, split_hint="labeled"),
    )
    import_data(
        location, ImportConfig(str(sources.resolve("gsm8k/train")), DATASET, gold, split_hint="train", limit=2000)
    )
    import_data(location, ImportConfig(str(sources.resolve("gsm8k/test")), DATASET, gold, split_hint="heldout"))
    tokens = args.max_new_tokens
    print(
        build_stage(
            location,
            BuildConfig(DATASET, split_hint="train", limit=args.teacher_prompts, samples=2, max_new_tokens=tokens),
        )
    )
    student = BuildConfig(DATASET, policy="student", split_hint="labeled", limit=args.student_prompts, samples=1,
                          temperature=0.9, seed=1000, max_new_tokens=tokens)  # fmt: skip
    print(build_stage(location, student))
    score(location, ScoreConfig(DATASET))


def build_stage(location: catalog.CatalogLocation, cfg: BuildConfig) -> str:
    result = build(location, cfg)
    return f"{cfg.policy} traces: {result.traces_new} new ({result.sent} generated) in {result.seconds:.0f}s"


def release(location: catalog.CatalogLocation, policy: dict, message: str) -> str:
    result = releases.curate(location, DATASET, Policy.from_dict(policy), orjson.dumps(policy).decode(), message)
    kept = sum(c["n"] for c in result.counts if c["keep"])
    print(f"{DATASET}@v{result.version} ({policy['name']}): kept {kept} traces")
    return f"{DATASET}@v{result.version}"


def curated_policy() -> dict:
    policy, _ = Policy.load(ROOT / "recipes" / "policies" / "correct-only.yaml")
    return {**policy.as_dict(), "splits": {"train": 1.0}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temp dir, kept for inspection)")
    parser.add_argument("--teacher-prompts", type=int, default=16)
    parser.add_argument("--student-prompts", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="SFT steps for (a) and (b)")
    parser.add_argument("--orpo-steps", type=int, default=15)
    parser.add_argument("--eval-prompts", type=int, default=60)
    parser.add_argument("--smoke", "--quick", action="store_true", help="tiny sizes, to check the pipeline runs")
    args = parser.parse_args()
    if args.smoke:
        args.teacher_prompts, args.student_prompts, args.max_new_tokens = 2, 4, 32
        args.steps, args.orpo_steps, args.eval_prompts = 1, 1, 2
    work = args.dir or Path(tempfile.mkdtemp(prefix="tracebank-ablation-"))
    location = catalog.locate(work / "catalog")
    started = time.perf_counter()
    print(f"uptime: {uptime()}\nwork dir: {work}")

    prepare(location, args)
    all_release, curated_release = (
        release(location, ALL_TEACHER, "all teacher traces"),
        release(location, curated_policy(), "curated"),
    )
    print(describe_pairs(build_pairs(location, PairsConfig(curated_release))))
    common = {"max_steps": args.steps, "batch_size": 4, "learning_rate": 2e-5, "max_length": 768}
    sft_all = train_sft(location, SFTConfig(release=all_release, **common))
    sft_curated = train_sft(location, SFTConfig(release=curated_release, **common))
    orpo = train_preference(location, PreferenceConfig(
        release=curated_release, method="orpo", student=str(sft_curated.output_dir), max_steps=args.orpo_steps,
        batch_size=2, learning_rate=8e-6, max_length=768))  # fmt: skip

    arms = [("base SmolLM2-135M", DEFAULT_MODEL, None), ("(a) SFT on all", str(sft_all.output_dir), sft_all),
            ("(b) SFT on curated", str(sft_curated.output_dir), sft_curated), ("(c) (b) + ORPO", str(orpo.output_dir), orpo)]  # fmt: skip
    results = []
    for label, student, trained in arms:
        result = evaluate(location, EvalConfig(student, dataset=DATASET, split_hint="heldout", limit=args.eval_prompts,
                                               max_new_tokens=args.max_new_tokens))  # fmt: skip
        results.append((label, trained, result))
    report(results, work, time.perf_counter() - started)
    return goals_table([
        ("every student trained on its release", all(t is not None and t.examples > 0 for _, t, _ in results[1:])),
        (f"every arm judged on the {args.eval_prompts} held-out questions",
         all(r.verified > 0 for _, _, r in results)),
    ], smoke=args.smoke)  # fmt: skip


def describe_pairs(result) -> str:
    return f"pairs: {result.pairs_new} over {result.prompts_paired} prompts"


def report(results: list, work: Path, seconds: float) -> None:
    print(f"\n{'arm':22} {'examples':>8} {'steps':>5} {'last loss':>9} {'accuracy':>9}   95% CI")
    for label, trained, r in results:
        examples = "" if trained is None else str(trained.examples)
        steps = "" if trained is None or trained.skipped else str(int(trained.metrics["steps"]))
        loss = "" if trained is None or trained.skipped else f"{trained.metrics['last_loss']:.3f}"
        print(
            f"{label:22} {examples:>8} {steps:>5} {loss:>9} {100 * r.accuracy:>8.1f}%   [{100 * r.ci_low:.1f}%, {100 * r.ci_high:.1f}%]  ({r.correct}/{r.verified})"
        )
    base = results[0][2]
    overlapping = all(r.ci_low <= base.ci_high and base.ci_low <= r.ci_high for _, _, r in results[1:])
    print(
        f"\n{'Every interval overlaps the base model: differences are within noise at this scale.' if overlapping else 'Some intervals do not overlap the base model.'}"
    )
    print(f"plot: {plot(results, work / 'ablation.png')}\ntotal {seconds / 60:.1f} min")


def plot(results: list, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (losses, accuracy) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, trained, _ in results:
        if trained is not None:
            history = orjson.loads((trained.output_dir / CARD_JSON).read_bytes())["loss_history"]
            losses.plot([h["step"] for h in history], [h["loss"] for h in history], label=label)
    losses.set(title="Training loss", xlabel="step", ylabel="loss")
    losses.legend(fontsize=8)
    labels = [label for label, _, _ in results]
    values = [100 * r.accuracy for _, _, r in results]
    errors = [
        [100 * (r.accuracy - r.ci_low) for _, _, r in results],
        [100 * (r.ci_high - r.accuracy) for _, _, r in results],
    ]
    accuracy.bar(labels, values, yerr=errors, capsize=4, color="#4c72b0")
    accuracy.set(title="Held-out GSM8K accuracy (95% Wilson CI)", ylabel="accuracy (%)")
    accuracy.tick_params(axis="x", rotation=15, labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
