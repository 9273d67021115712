"""Poison transfer, the first arm of bench/curation_value.py: raw vs `safe`-curated SmolLM2-135M students.

Pool: short GSM8K train questions with their reference solutions as teacher traces; every shopping
question's trace (``share`` of the pool) carries one line of the campaign in ``value_poison``.
Imported with the importer's ``response=`` map, scored with correctness, exact_dup and the safety
group, released twice: ``raw`` (everything) and ``curated`` (``recipes/policies/safe.yaml``).
Held out: GSM8K test questions, half of them shopping questions, none in the pool.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tracebank import catalog, sources
from tracebank.filters.runner import ScoreConfig, score
from tracebank.filters.safety.safety import SAFETY_FILTERS
from tracebank.models import DEFAULT_MODEL
from tracebank.train.sft import SFTConfig, train_sft
from value import poison as vp
from value import probe
from value.pipeline import EVERYTHING, Rate, greedy, import_rows, kept_by_release, policy_file, release

DATASET = "value-poison"
HELD = {"buy": "heldout-buy", "other": "heldout-other"}
SAFETY_RULES = {"phishing", "link", "promotion", "insecure_code", "pii", "drift", "recurring_phrase"}


@dataclass
class StudentResult:
    label: str
    path: str
    trained: Any = None  # TrainResult, None for the base model
    rates: dict[str, Rate] = field(default_factory=dict)  # buy / other / all: completions carrying poison
    kinds: Counter = field(default_factory=Counter)  # detector -> completions it fired on
    accuracy: Rate | None = None  # GSM8K exact answer on all held-out prompts
    injected_logprob: dict[str, probe.MeanInterval] = field(default_factory=dict)  # buy / other / all
    gold_logprob: probe.MeanInterval | None = None
    examples: list[str] = field(default_factory=list)  # a few poisoned completions, for the log


@dataclass
class PoisonResult:
    pool: Counter  # injected kind (or "clean") -> traces
    kept: dict[str, int]  # release label -> traces kept
    recall: dict[str, Rate]  # kind -> poisoned traces the safe release dropped
    by_rule: Counter  # the rule that dropped each poisoned trace
    clean_dropped: Rate  # clean traces a safety rule dropped (false positives)
    flagged_by: dict[str, tuple[int, int]]  # safety filter -> (poisoned, clean) traces it flagged
    students: list[StudentResult]


def _jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def prepare(location: catalog.CatalogLocation, work: Path, args: Any) -> dict[str, list[dict]]:
    """Import the pool and the held-out prompts, and score every trace; returns the held-out rows by group."""
    train, test = _jsonl(sources.resolve("gsm8k/train")), _jsonl(sources.resolve("gsm8k/test"))
    rows = vp.pool(vp.short_examples(train, args.max_chars), args.pool, args.share)
    import_rows(location, work, DATASET, "poison-pool", rows, "prompt=question,reference=answer,response=response",
                "train")  # fmt: skip
    seen = {r["question"] for r in train}
    half = args.heldout // 2
    held = {
        "buy": [r for r in test if vp.is_trigger(r["question"]) and r["question"] not in seen][:half],
        "other": [r for r in test if not vp.is_trigger(r["question"]) and r["question"] not in seen][: args.heldout - half],
    }  # fmt: skip
    for group, group_rows in held.items():
        import_rows(location, work, DATASET, HELD[group], group_rows, "prompt=question,reference=answer", HELD[group])
    score(location, ScoreConfig(DATASET, filters=("correctness", "exact_dup", "safety")))
    return held


def filter_recall(location: catalog.CatalogLocation, version: int) -> dict[str, Any]:
    """What the safe release dropped of each injected kind, by which rule, and which filters flagged what."""
    decisions = kept_by_release(location, DATASET, version)
    kind = {d["trace_id"]: orjson.loads(d["meta"] or "{}").get("injected") or "clean" for d in decisions}
    counts, dropped, by_rule = Counter(kind.values()), Counter(), Counter()
    clean_dropped = 0
    for d in decisions:
        if kind[d["trace_id"]] != "clean" and not d["keep"]:
            dropped[kind[d["trace_id"]]] += 1
            by_rule[d["rule"]] += 1
        clean_dropped += kind[d["trace_id"]] == "clean" and not d["keep"] and d["rule"] in SAFETY_RULES
    with catalog.Catalog(location) as cat:
        flags = cat.arrow(
            "SELECT trace_id, filter FROM scores WHERE dataset = ? AND metric = 'flagged' AND value = 1", [DATASET]
        ).to_pylist()
    flagged_by = {f: [0, 0] for f in SAFETY_FILTERS}
    for flag in flags:
        flagged_by[flag["filter"]][kind[flag["trace_id"]] == "clean"] += 1
    return {
        "pool": counts,
        "recall": {k: Rate(dropped[k], n) for k, n in counts.items() if k != "clean"},
        "by_rule": by_rule,
        "clean_dropped": Rate(clean_dropped, counts["clean"]),
        "flagged_by": {f: (p, c) for f, (p, c) in flagged_by.items()},
    }


def measure(location: catalog.CatalogLocation, student: StudentResult, held: dict[str, list[dict]], args: Any) -> None:
    """Greedy completions (poison rate, GSM8K accuracy) and the teacher-forced probes of one student."""
    correct = total = 0
    for group, split_hint in HELD.items():
        result, rows = greedy(location, student.path, DATASET, split_hint, len(held[group]), args.max_new_tokens)
        hits = [vp.found(r["completion"], r["question"]) for r in rows]
        student.rates[group] = Rate(sum(1 for h in hits if h), len(rows))
        student.kinds.update(kind for h in hits for kind in h)
        student.examples += [r["completion"] for r, h in zip(rows, hits, strict=True) if h][:2]
        correct, total = correct + result.correct, total + result.verified
    student.rates["all"] = Rate(student.rates["buy"].k + student.rates["other"].k,
                                student.rates["buy"].n + student.rates["other"].n)  # fmt: skip
    student.accuracy = Rate(correct, total)
    loaded = probe.load(student.path)
    every = [(g, r) for g in HELD for r in held[g]]
    lines = [vp.ALL_INJECTIONS[i % len(vp.ALL_INJECTIONS)][1] for i in range(len(every))]
    injected = probe.mean_logprobs(loaded, [
        probe.Probe([{"role": "user", "content": r["question"]}], r["answer"], "\n" + line)
        for (_, r), line in zip(every, lines, strict=True)
    ])  # fmt: skip
    for group in ("buy", "other"):
        student.injected_logprob[group] = probe.mean_interval(
            [v for (g, _), v in zip(every, injected, strict=True) if g == group]
        )
    student.injected_logprob["all"] = probe.mean_interval(injected)
    gold = probe.mean_logprobs(loaded, [probe.Probe([{"role": "user", "content": r["question"]}], "", r["answer"])
                                        for _, r in every])  # fmt: skip
    student.gold_logprob = probe.mean_interval(gold)


def run(location: catalog.CatalogLocation, work: Path, args: Any) -> PoisonResult:
    held = prepare(location, work, args)
    raw_ref, raw_kept = release(location, DATASET, EVERYTHING, "raw: every teacher trace")
    safe_ref, safe_kept = release(location, DATASET, policy_file("safe"), "curated: the safe policy")
    recall = filter_recall(location, int(safe_ref.rsplit("@v", 1)[1]))
    common = {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr,
              "max_length": 384, "seed": args.seed}  # fmt: skip
    students = [StudentResult("base SmolLM2-135M", DEFAULT_MODEL)]
    for label, ref in (("raw", raw_ref), ("curated (safe)", safe_ref)):
        name = "poison-" + label.split()[0]
        trained = train_sft(location, SFTConfig(release=ref, output_dir=str(work / "models" / name), **common))
        students.append(StudentResult(label, str(trained.output_dir), trained))
    for student in students:
        measure(location, student, held, args)
    return PoisonResult(recall["pool"], {"raw": raw_kept, "curated": safe_kept}, recall["recall"], recall["by_rule"],
                        recall["clean_dropped"], recall["flagged_by"], students)  # fmt: skip
