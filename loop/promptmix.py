"""``tracebank augment``: new math prompts near the student's decision boundary (PromptMix).

Parents are prompts the student got wrong in an eval run (``from_eval``, or the dataset's latest
eval), else prompts whose teacher traces disagree (self-consistency vote share strictly between 0
and 1; mixed correctness implies it, as traces with one answer share one verdict), else a seeded
sample; the result says which. Generated prompts are never parents, and neither are held-out
prompts (split hint or release split test/validation/dev...): nothing derived from a held-out
prompt may reach training. A child keeps its parent's split hint (``promptmix`` when it has none);
a policy with ``use_split_hints: true`` then keeps it on its parent's side.

Methods rewrite the last user turn of a math word problem, deterministically under the seed:

- ``numbers``: every free-standing number changes (integers stay integers, order and divisibility
  among them are kept, magnitudes stay within half to twice; numbers inside words, times,
  fractions and years stay). The reference is then unknown: self-consistency judges the traces.
- ``combine``: two problems of the same split hint and the question for the sum of their answers;
  the reference is the sum of the parents' references where both are numbers.
- ``distractor``: an irrelevant sentence with a number before the question (GSM-IC); the parent's
  reference still holds and is kept.

New prompts land in one snapshot with ``origin`` ``promptmix:<method>`` and their ``parents``;
child ``i`` depends only on (seed, i, parents), so a rerun adds nothing. ``solve`` then builds k
teacher traces per new prompt and scores them (recipes/policies/promptmix.yaml curates).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any

import orjson

from tracebank import catalog as catalog_mod
from tracebank import hashing, provenance, records
from tracebank.builders.base import Teacher
from tracebank.builders.runner import BuildConfig, BuildResult, build
from tracebank.errors import TracebankError, check_at_least
from tracebank.filters.correctness.consistency import majority
from tracebank.filters.runner import ScoreConfig, ScoreResult, score
from tracebank.importer import new_rows
from tracebank.tasks import get_task
from tracebank.tasks.base import edit_last_user
from tracebank.tasks.math import normalize_number, reference_answer

METHODS = ("numbers", "combine", "distractor")
SELECTIONS = ("auto", "eval", "disagreement", "sample")
HELD_OUT = ("test", "validation", "valid", "val", "dev", "eval", "heldout", "held_out", "holdout")
SCORE_FILTERS = ("correctness", "self_consistency", "decontam")
MAPPING_TRIES = 20  # random draws of new values per question before it counts as unchangeable
ATTEMPTS = 8  # parents tried per child before it is counted as skipped (e.g. a question without numbers)
# A number standing alone: not inside a word ("3D", "COVID-19"), a time ("3:30") or a fraction ("3/4").
NUMBER = re.compile(r"(?<![\w.,/:-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w/:]|[.,]\d)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
NAMES = ("Priya", "Tomasz", "Ingrid", "Kwame", "Lucia", "Haruto", "Amara", "Dmitri", "Soren", "Nadia")
# (sentence, words that must not occur in the question): the sentence must not touch what is asked.
DISTRACTORS = (
    ("The shoe size of {name}'s father is {n}.", ("shoe", "size", "father")),
    ("{name}'s sister collected {n} stamps last year.", ("stamp", "sister", "collect")),
    ("The bus that {name} takes to work is number {n}.", ("bus", "work")),
    ("The library near {name}'s house has {n} chairs.", ("library", "chair", "house")),
    ("{name}'s cousin planted {n} tulips in the spring.", ("tulip", "cousin", "plant", "spring")),
    ("{name} lives on floor {n} of an apartment building.", ("floor", "apartment", "building")),
)


@dataclass(frozen=True)
class AugmentConfig:
    dataset: str
    methods: tuple[str, ...] = METHODS  # child i uses methods[i % len(methods)]
    count: int = 10  # new prompts to generate
    seed: int = 0
    selection: str = "auto"  # auto: eval failures, else teacher disagreement, else a seeded sample
    from_eval: str | None = None  # eval run whose failed prompts are the parents (default: the latest)
    solve: BuildConfig | None = None  # how to build teacher traces for the new prompts; None: do not solve
    score_filters: tuple[str, ...] = SCORE_FILTERS  # scored after solving (the promptmix policy reads them)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(m.strip() for m in self.methods))
        if (
            not self.methods
            or any(m not in METHODS for m in self.methods)
            or len(set(self.methods)) < len(self.methods)
        ):
            raise TracebankError(f"augment methods {self.methods}: choose from {', '.join(METHODS)}, each once")
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise TracebankError(f"count must be a whole number, got {self.count!r}")
        check_at_least(self, 1, "count")
        if self.selection not in SELECTIONS:
            raise TracebankError(f"selection {self.selection!r}: choose one of {', '.join(SELECTIONS)}")
        if self.from_eval is not None and self.selection not in ("auto", "eval"):
            raise TracebankError(f"--from-eval picks failed prompts: it cannot go with selection {self.selection!r}")
        if self.solve is not None:
            if self.solve.dataset != self.dataset or self.solve.policy != "teacher" or self.solve.prompt_ids:
                raise TracebankError("solve: a teacher BuildConfig of the same dataset, without prompt_ids")
            if self.solve.samples < 2:
                raise TracebankError(f"solve samples must be at least 2 for a majority vote (3+ breaks ties), "
                                     f"got {self.solve.samples}")  # fmt: skip
            ScoreConfig(self.dataset, tuple(self.score_filters))  # validates the filter names


@dataclass(frozen=True)
class AugmentResult:
    dataset: str
    selection: str  # eval:<run> | disagreement | sample: where the parents came from
    note: str  # why that selection (e.g. why an eval could not be used)
    parents_available: int  # boundary prompts usable as parents
    held_out_skipped: int  # boundary prompts left out because they are held out
    generated: int  # distinct new prompts made (new + already stored)
    prompts_new: int
    prompts_existing: int
    skipped: int  # children no parent could be rewritten into (e.g. questions without numbers)
    by_method: dict[str, int]
    prompt_ids: tuple[str, ...]
    snapshot: int | None
    run_id: str
    build: BuildResult | None = None
    score: ScoreResult | None = None


@dataclass(frozen=True)
class Parent:
    prompt_id: str
    messages: list[dict[str, str]]
    reference: str | None
    split_hint: str | None

    @property
    def question(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


@dataclass(frozen=True)
class Child:
    method: str
    parents: tuple[Parent, ...]
    question: str
    reference: str | None
    detail: dict[str, Any]


# ---- boundary selection -------------------------------------------------------------------------


def _pool(cat: catalog_mod.Catalog, dataset: str) -> dict[str, dict[str, Any]]:
    """Imported math prompts by id, each marked held out or not (SELECT *: old catalogs lack origin)."""
    rows = cat.arrow("SELECT * FROM prompts WHERE dataset = ? ORDER BY prompt_id", [dataset]).to_pylist()
    released = cat.arrow(
        "SELECT DISTINCT prompt_id FROM decisions WHERE dataset = ? AND list_contains(?, split)", [dataset, HELD_OUT]
    ).column(0)
    held = set(released.to_pylist())
    math = {r["prompt_id"]: r for r in rows if r["task"] == "math" and not r.get("origin")}
    if not math:
        tasks = sorted({r["task"] for r in rows})
        raise TracebankError(f"augment rewrites math word problems; dataset {dataset!r} has none (tasks: {tasks})")
    for row in math.values():
        row["held_out"] = row["prompt_id"] in held or (row["split_hint"] or "").lower() in HELD_OUT
    return math


def _eval_failures(cat: catalog_mod.Catalog, cfg: AugmentConfig) -> tuple[str | None, list[str], bool]:
    """(eval run, prompts the student got wrong, whether the eval was on a held-out split)."""
    run = cfg.from_eval or cat.scalar(
        "SELECT eval_run FROM evals WHERE dataset = ? ORDER BY created_at DESC, eval_run DESC LIMIT 1", [cfg.dataset]
    )
    if run is None:
        return None, [], False
    rows = cat.arrow("SELECT dataset, split, prompt_id, correct FROM evals WHERE eval_run = ?", [run]).to_pylist()
    if not rows or rows[0]["dataset"] != cfg.dataset:
        raise TracebankError(
            f"no eval run {run!r} of dataset {cfg.dataset!r}; see: tracebank sql 'SELECT * FROM evals'"
        )
    failed = sorted({r["prompt_id"] for r in rows if r["correct"] == 0})
    return run, failed, rows[0]["split"].lower() in HELD_OUT


def _disagreements(cat: catalog_mod.Catalog, dataset: str) -> list[str]:
    """Prompts whose teacher answers split: the self-consistency vote share is strictly between 0 and 1."""
    traces = cat.arrow(
        "SELECT t.prompt_id, p.task, t.answer FROM traces t JOIN prompts p ON p.prompt_id = t.prompt_id "
        "WHERE t.dataset = ? AND t.policy = 'teacher' AND t.rationale IS NOT NULL ORDER BY t.trace_id",
        [dataset],
    ).to_pylist()
    votes: dict[str, list[str | None]] = defaultdict(list)
    for trace in traces:
        votes[trace["prompt_id"]].append(get_task(trace["task"]).vote_key(trace["answer"]))
    return sorted(p for p, keys in votes.items() if len(keys) > 1 and 0 < majority(keys)[1] < 1)


def select_parents(location: catalog_mod.CatalogLocation, cfg: AugmentConfig) -> tuple[list[Parent], str, str, int]:
    """(parents, selection used, why, held-out prompts left out), parents sorted by prompt_id."""
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(cfg.dataset)
        pool = _pool(cat, cfg.dataset)
        notes = []
        if cfg.selection in ("auto", "eval"):
            run, failed, held_split = _eval_failures(cat, cfg)
            found = [pool[p] for p in failed if p in pool]
            usable = [] if held_split else [r for r in found if not r["held_out"]]
            if usable:
                return _parents(usable), f"eval:{run}", f"{len(failed)} prompts failed", len(found) - len(usable)
            why = (f"eval {run} ran on held-out split prompts" if held_split else f"eval {run} has no failed prompts "
                   "outside held-out splits") if run else f"dataset {cfg.dataset!r} has no eval run"  # fmt: skip
            if cfg.selection == "eval" or cfg.from_eval:
                raise TracebankError(f"{why}: nothing to augment from; evaluate the student on train prompts "
                                     "(tracebank eval --dataset D --split-hint train) or use --selection disagreement")  # fmt: skip
            notes.append(why)
        if cfg.selection in ("auto", "disagreement"):
            found = [pool[p] for p in _disagreements(cat, cfg.dataset) if p in pool]
            usable = [r for r in found if not r["held_out"]]
            if usable:
                return (
                    _parents(usable),
                    "disagreement",
                    "; ".join(notes) or "teacher answers split",
                    len(found) - len(usable),
                )
            notes.append("no prompt's teacher traces disagree outside held-out splits")
            if cfg.selection == "disagreement":
                raise TracebankError(
                    f"{notes[-1]}: build several teacher samples per prompt first, or use --selection sample"
                )
    usable = [r for r in pool.values() if not r["held_out"]]
    if not usable:
        raise TracebankError(
            f"every math prompt of {cfg.dataset!r} is held out (test/validation split): none may be a parent"
        )
    return _parents(usable), "sample", "; ".join(notes) or "asked for", len(pool) - len(usable)


def _parents(rows: list[dict[str, Any]]) -> list[Parent]:
    return [Parent(r["prompt_id"], r["messages"], r["reference"], r["split_hint"]) for r in rows]


# ---- methods ------------------------------------------------------------------------------------


def _step(value: int) -> int:
    """The granularity a number is given in (15 -> 5, 300 -> 100, 48 -> 1): a new value keeps it."""
    return next((g for g in (1000, 100, 10, 5) if value % g == 0 and value >= 2 * g), 1)


def _new_values(values: list[Fraction], percents: set[Fraction], rng: random.Random) -> dict[Fraction, Fraction] | None:
    """A new value per distinct number, ascending so order is kept; a divisor's multiples stay multiples."""
    mapping: dict[Fraction, Fraction] = {}
    for value in sorted(values):
        scale = value.denominator  # 2.5 moves in halves, 1.25 in quarters: the new value keeps that grain
        units = int(value * scale)
        step = _step(units)
        floor = max(mapping.values(), default=Fraction(0))
        divisors = [mapping[a] for a in mapping if a.denominator == 1 and value.denominator == 1 and value % a == 0]
        divisors += [Fraction(2)] if value.denominator == 1 and value % 2 == 0 else []  # "half of 48" stays whole
        top = min(2 * units, 100 * scale) if value in percents and value <= 100 else 2 * units
        low = max(2, -(-units // (2 * step)) * step)  # half, rounded up to the step
        options = [
            Fraction(u, scale) for u in range(low, top + 1, step)
            if u != units and Fraction(u, scale) > floor and all(Fraction(u, scale) % d == 0 for d in divisors)
        ]  # fmt: skip
        if not options:
            return None
        mapping[value] = rng.choice(options)
    return mapping


def _format(value: Fraction, like: str) -> str:
    decimals = len(like.split(".")[1]) if "." in like else 0
    text = f"{float(value):.{decimals}f}" if decimals else str(int(value))
    if "," in like:
        whole, _, fraction = text.partition(".")
        text = f"{int(whole):,}" + (f".{fraction}" if fraction else "")
    return text


def change_numbers(question: str, rng: random.Random) -> tuple[str, list[tuple[str, str]]] | None:
    """The question with its free-standing numbers changed, and (old, new) per change; None: nothing to change."""
    found = []
    for match in NUMBER.finditer(question):
        value = Fraction(normalize_number(match.group(0)))
        money_or_grouped = re.search(r"[$,]", question[max(0, match.start() - 1) : match.end()]) is not None
        year = value.denominator == 1 and 1800 <= value <= 2100 and not money_or_grouped  # "in 2019" stays
        if value > 1 and not year:
            percent = re.match(r"\s?(%|percent\b)", question[match.end() :]) is not None
            found.append((match, value, percent))
    if not found:
        return None
    values, percents = sorted({v for _, v, _ in found}), {v for _, v, p in found if p}
    mapping = next((m for _ in range(MAPPING_TRIES) if (m := _new_values(values, percents, rng))), None)
    if mapping is None:
        return None
    pieces, changes, end = [], [], 0
    for match, value, _ in found:
        new = _format(mapping[value], match.group(0))
        pieces += [question[end : match.start()], new]
        changes.append((match.group(0), new))
        end = match.end()
    return "".join(pieces) + question[end:], changes


def _numbers(parent: Parent, pool: list[Parent], rng: random.Random) -> Child | None:
    changed = change_numbers(parent.question, rng)
    if changed is None:
        return None
    question, changes = changed
    return Child("numbers", (parent,), question, None, {"changes": changes})


def _combine(first: Parent, pool: list[Parent], rng: random.Random) -> Child | None:
    partners = [p for p in pool if p.split_hint == first.split_hint and p.prompt_id != first.prompt_id]
    if not partners:
        return None
    second = rng.choice(partners)
    question = (f"Solve both problems below, then add their answers.\n\nProblem 1: {first.question}\n\n"
                f"Problem 2: {second.question}\n\nWhat is the answer to Problem 1 plus the answer to Problem 2?")  # fmt: skip
    answers = [reference_answer(p.reference)[0] for p in (first, second)]
    numeric = [normalize_number(a) if a else None for a in answers]
    reference = None
    if None not in numeric:
        total = sum(Fraction(n) for n in numeric)
        reference = f"#### {normalize_number(str(total))}"
    return Child("combine", (first, second), question, reference, {"combine": "sum"})


def _distractor(parent: Parent, pool: list[Parent], rng: random.Random) -> Child | None:
    lowered = parent.question.lower()
    names = [n for n in NAMES if n.lower() not in lowered]
    templates = [t for t, words in DISTRACTORS if not any(w in lowered for w in words)]
    if not names or not templates:
        return None
    sentence = rng.choice(templates).format(name=rng.choice(names), n=rng.randint(3, 60))
    starts = [match.end() for match in SENTENCE_END.finditer(parent.question.rstrip())]
    at = starts[-1] if starts else 0  # before the last sentence, the question, as GSM-IC does
    question = f"{parent.question[:at]}{sentence} {parent.question[at:]}"
    return Child("distractor", (parent,), question, parent.reference, {"inserted": sentence})


# method -> rewrite(parent, every parent, rng): a child, or None when this parent cannot be rewritten so.
REWRITES: dict[str, Callable[[Parent, list[Parent], random.Random], Child | None]] = {
    "numbers": _numbers,
    "combine": _combine,
    "distractor": _distractor,
}


def generate(parents: list[Parent], cfg: AugmentConfig) -> tuple[list[Child], int]:
    """``cfg.count`` children (fewer where no parent fits a method) and how many were skipped.

    Child ``i`` draws from ``Random("promptmix/<seed>/<i>")`` over parents sorted by prompt_id, so it
    does not depend on ``count``: a larger count only adds children.
    """
    children, skipped = [], 0
    for index in range(cfg.count):
        method = cfg.methods[index % len(cfg.methods)]
        rng = random.Random(f"promptmix/{cfg.seed}/{index}")
        for _ in range(ATTEMPTS):
            child = REWRITES[method](rng.choice(parents), parents, rng)
            if child is not None:
                children.append(replace(child, detail={**child.detail, "seed": cfg.seed, "index": index}))
                break
        else:
            skipped += 1
    return children, skipped


# ---- commit and solve ---------------------------------------------------------------------------


def _row(child: Child, dataset: str, now: Any) -> dict[str, Any]:
    first = child.parents[0]
    messages = edit_last_user(first.messages, lambda _: child.question)
    return {
        "prompt_id": hashing.prompt_id(dataset, messages), "dataset": dataset, "task": "math",
        "messages": messages, "split_hint": first.split_hint or "promptmix", "reference": child.reference,
        "source": "promptmix", "source_id": f"{child.method}:{child.detail['seed']}:{child.detail['index']}",
        "meta": orjson.dumps(child.detail).decode(), "imported_at": now, "origin": f"promptmix:{child.method}",
        "parents": [p.prompt_id for p in child.parents],
    }  # fmt: skip


def augment(location: catalog_mod.CatalogLocation, cfg: AugmentConfig, teacher: Teacher | None = None) -> AugmentResult:
    """Generate ``cfg.count`` prompts from boundary parents, commit the new ones in one snapshot, then
    (with ``cfg.solve``) build k teacher traces for every generated prompt and score them.

    ``teacher`` replaces the configured backend (tests). Nothing is written when generation fails.
    """
    started, run_id = records.now(), provenance.new_run_id("augment")
    parents, selection, note, held_out = select_parents(location, cfg)
    children, skipped = generate(parents, cfg)
    if not children:
        raise TracebankError(f"no {'/'.join(cfg.methods)} prompt could be made from the {len(parents)} parents "
                             f"({selection}); try another method or more parents")  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    for child in children:  # two children may coincide: the first one's detail is kept
        row = _row(child, cfg.dataset, started)
        rows.setdefault(row["prompt_id"], row)
    table = records.to_table(rows.values(), records.PROMPTS)
    by_method = {m: sum(r["origin"] == f"promptmix:{m}" for r in rows.values()) for m in cfg.methods}
    with catalog_mod.writing(location, f"augment {cfg.dataset}", {"stage": "augment", "run_id": run_id}) as writer:
        new = new_rows(writer, table, "prompts", "prompt_id", cfg.dataset)
        counters = {"parents": len(parents), "held_out_skipped": held_out, "generated": len(rows),
                    "prompts_new": new.num_rows, "skipped": skipped, **{f"new_{m}": n for m, n in by_method.items()}}  # fmt: skip
        if new.num_rows:
            writer.message = f"augment {cfg.dataset}: {new.num_rows} promptmix prompts ({selection})"
            writer.insert("prompts", new)
            config = {**asdict(cfg), "selection_used": selection}
            writer.insert("runs", provenance.run_row(run_id, "augment", cfg.dataset, started, config, counters))
    ids = tuple(sorted(rows))
    result = AugmentResult(cfg.dataset, selection, note, len(parents), held_out, len(rows), new.num_rows,
                           len(rows) - new.num_rows, skipped, by_method, ids, writer.snapshot, run_id)  # fmt: skip
    if cfg.solve is None:
        return result
    built = build(location, replace(cfg.solve, prompt_ids=ids), teacher)
    scored = score(location, ScoreConfig(cfg.dataset, tuple(cfg.score_filters)))
    return replace(result, build=built, score=scored)
