"""``tracebank round``: one closed-loop round of data aimed at what the student gets wrong.

    tracebank round gsm8k --student .tracebank/models/gsm8k-v1-sft --split-hint train --limit 200

A round evaluates the student on a prompt pool (a split hint, optionally the first ``limit``
prompts) with the task's verifier, asks the teacher for new traces of only the prompts the
student failed (with ``feedback``, the student's wrong answer is added to the request, never the
reference), scores them with the default filters and records the round in ``runs`` (stage
``round``). Every new trace carries ``round`` and ``lineage`` (the student and the eval run);
every eval row carries ``round``. Data generated online against the student's failures beats a
fixed offline set (*Democratizing Reasoning*; the teacher-hacking study).

A round samples with ``seed + ROUND_SEED_STRIDE * round``, so a later round never reuses an
earlier round's requests, while a rerun of the same round reuses its stored eval and its traces
and sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from tracebank import catalog as catalog_mod
from tracebank import provenance, records
from tracebank.builders.base import Teacher
from tracebank.builders.plans import Shaping
from tracebank.builders.runner import BuildConfig, build
from tracebank.config import check_keys, field_names
from tracebank.errors import TracebankError, check_at_least
from tracebank.filters.runner import DEFAULT_FILTERS, ScoreConfig, score
from tracebank.hashing import canonical_json
from tracebank.loop.hints import RationalizeConfig, rationalize
from tracebank.models import DEFAULT_MODEL
from tracebank.train.evaluate import EvalConfig, evaluate, student_name, wilson_interval

ROUND_SEED_STRIDE = 1000
# Teacher settings a round passes through to its build; the round itself chooses the prompts.
TEACHER_FIELDS = field_names(BuildConfig, "dataset", "policy", "split_hint", "limit", "prompt_ids")
FEEDBACK_NOTE = (
    "A student answered this problem with: {answer}\nThat answer is wrong. Solve the problem again from the "
    "start, check every step, and give the correct final answer in the format asked for."
)
NO_ANSWER_NOTE = (
    "A student tried this problem and gave no final answer that could be checked. Solve the problem step by "
    "step and give the final answer in the format asked for."
)
ANSWER_CHARS = 400  # a student's answer quoted in feedback at most (a code answer can be long)
COUNTERS = ("round", "prompts", "verified", "correct", "accuracy", "ci_low", "ci_high", "prompts_failed",
            "traces_new", "traces_correct", "traces_hinted")  # fmt: skip


@dataclass(frozen=True)
class RoundConfig:
    dataset: str
    student: str = DEFAULT_MODEL  # embedded model name, a trained model directory, or a cached hub id
    round: int | None = None  # None: the round after the last completed one
    split_hint: str = "train"  # the prompt pool: the dataset's prompts with this split hint ...
    limit: int | None = None  # ... the first N of them (by prompt_id: a stable sample)
    feedback: bool = True  # add the student's wrong answer to each failed prompt's request
    hints: bool = False  # rationalize with the reference the failed prompts the teacher also failed
    eval_max_new_tokens: int = 256
    eval_batch_size: int = 8
    filters: tuple[str, ...] = DEFAULT_FILTERS  # scorers run over the new traces (correctness first)
    build: dict[str, Any] = field(default_factory=dict)  # teacher settings: BuildConfig fields (TEACHER_FIELDS)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise TracebankError("a round needs a dataset")
        check_at_least(self, 1, "round", "limit")
        if not isinstance(self.build, dict):
            raise TracebankError("build must map teacher settings (BuildConfig fields) to values, e.g. {samples: 4}")
        check_keys(self.build, TEACHER_FIELDS, "round build settings")
        object.__setattr__(self, "filters", tuple(self.filters))
        if "correctness" not in self.filters:
            raise TracebankError("a round counts verified traces: keep 'correctness' among its filters")
        ScoreConfig(self.dataset, self.filters)
        self.build_config(("-",), 1)
        self.eval_config(1)
        if self.hints:  # the rationalizing build's own rules (e.g. no fewshot: its shots carry references)
            RationalizeConfig(self.dataset, round=1, build=self.build_config(None, 1))

    def build_config(self, prompt_ids: tuple[str, ...] | None, round_number: int) -> BuildConfig:
        """The teacher build of a round: only ``prompt_ids``, seeded apart from every other round."""
        seed = self.build.get("seed", 0) + ROUND_SEED_STRIDE * round_number
        return BuildConfig(**{**self.build, "dataset": self.dataset, "prompt_ids": prompt_ids, "seed": seed})

    def eval_config(self, round_number: int) -> EvalConfig:
        return EvalConfig(
            self.student, dataset=self.dataset, split_hint=self.split_hint, limit=self.limit,
            max_new_tokens=self.eval_max_new_tokens, batch_size=self.eval_batch_size, round=round_number,
        )  # fmt: skip


@dataclass(frozen=True)
class RoundResult:
    dataset: str
    round: int
    student: str
    eval_run: str
    prompts: int  # prompts of the pool the student answered
    verified: int  # of them, prompts the task could verify
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    prompts_failed: int  # prompts sent back to the teacher
    traces_new: int  # teacher traces of this round in the catalog (all runs of it)
    traces_correct: int  # of them, verified correct
    traces_hinted: int  # traces of this round written with a hint (--hints)
    sent: int  # requests this run sent to the teacher
    run_id: str | None  # the runs row written, None when a rerun changed nothing

    def __str__(self) -> str:
        return (
            f"round {self.round} of {self.dataset}: student accuracy {100 * self.accuracy:.1f}% "
            f"({self.correct}/{self.verified}), 95% CI [{100 * self.ci_low:.1f}%, {100 * self.ci_high:.1f}%]; "
            f"{self.prompts_failed} failed prompts sent back, {self.traces_new} round traces "
            f"({self.traces_correct} verified correct, {self.traces_hinted} hinted), {self.sent} requests sent"
        )


def round_history(cat: catalog_mod.Catalog, dataset: str) -> list[dict[str, Any]]:
    """Each round's latest ``runs`` row as a dict: its counters, student and eval run; by round."""
    rows = cat.arrow(
        "SELECT run_id, config, counters FROM runs WHERE stage = 'round' AND dataset = ? ORDER BY finished_at, run_id",
        [dataset],
    ).to_pylist()
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        counters = {c["name"]: c["value"] for c in row["counters"]}
        config = orjson.loads(row["config"])
        entry = {k: counters.get(k) for k in COUNTERS}
        entry.update(run_id=row["run_id"], student=config["student"], eval_run=config["eval_run"])
        entry.update({k: int(entry[k]) for k in COUNTERS if k not in ("accuracy", "ci_low", "ci_high")})
        latest[entry["round"]] = entry
    return [latest[n] for n in sorted(latest)]


def next_round(location: catalog_mod.CatalogLocation, dataset: str) -> int:
    """The round after the last completed one (a round that stopped half-way is resumed, not skipped)."""
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(dataset)
        history = round_history(cat, dataset)
    return history[-1]["round"] + 1 if history else 1


def stored_eval(location: catalog_mod.CatalogLocation, cfg: EvalConfig) -> str | None:
    """The latest stored eval run of the same student, round, prompts and decoding as ``cfg``, if any.

    Only split-hint evals are matched (what rounds and the loop run); the prompt set must be the
    one ``cfg`` would evaluate now, so a pool that has grown since is evaluated again.
    """
    with catalog_mod.Catalog(location) as cat:
        pool = cat.arrow(
            "SELECT prompt_id FROM prompts WHERE dataset = ? AND split_hint = ? ORDER BY prompt_id",
            [cfg.dataset, cfg.split_hint],
        ).column(0).to_pylist()[: cfg.limit]  # fmt: skip
        runs = cat.arrow(
            "SELECT e.eval_run, list_sort(list(e.prompt_id)) AS prompt_ids, any_value(r.config) AS config "
            "FROM evals e JOIN runs r ON r.run_id = e.eval_run WHERE e.dataset = ? AND e.split = ? AND e.version IS NULL "
            "AND e.student = ? AND e.round IS NOT DISTINCT FROM ? GROUP BY e.eval_run ORDER BY any_value(r.finished_at) DESC",
            [cfg.dataset, cfg.split_hint, student_name(cfg.student), cfg.round],
        ).to_pylist()
    for run in runs:
        config = orjson.loads(run["config"])
        same_decoding = all(config.get(k) == getattr(cfg, k) for k in ("max_new_tokens", "temperature"))
        if same_decoding and run["prompt_ids"] == sorted(pool):
            return run["eval_run"]
    return None


def feedback_note(answer: str | None) -> str:
    """The text added to a failed prompt's request: the student's wrong answer, never the reference."""
    if not answer:
        return NO_ANSWER_NOTE
    clipped = answer if len(answer) <= ANSWER_CHARS else answer[:ANSWER_CHARS].rstrip() + " …"
    return FEEDBACK_NOTE.format(answer=clipped)


def round_shaping(cfg: RoundConfig, round_number: int, eval_run: str, failed: Iterable[dict[str, Any]]) -> Shaping:
    """Notes (with feedback) and tags for the failed prompts: round, not hinted, lineage per prompt."""
    failed = list(failed)
    lineage = canonical_json({"student": student_name(cfg.student), "eval_run": eval_run, "feedback": cfg.feedback})
    return Shaping(
        label=f"round={round_number}" + ("+feedback" if cfg.feedback else ""),
        notes={row["prompt_id"]: feedback_note(row["answer"]) for row in failed} if cfg.feedback else {},
        round=round_number,
        hinted=False,
        lineage={row["prompt_id"]: lineage.decode() for row in failed},
    )


def _eval(
    location: catalog_mod.CatalogLocation, cfg: EvalConfig, student_teacher: Teacher | None
) -> tuple[str, list[dict[str, Any]], bool]:
    """(eval run, its rows, whether it ran now): a stored eval of the same round and student is reused."""
    eval_run = stored_eval(location, cfg)
    fresh = eval_run is None
    if fresh:
        eval_run = evaluate(location, cfg, student_teacher).eval_run
    with catalog_mod.Catalog(location) as cat:
        rows = cat.arrow(
            "SELECT prompt_id, answer, correct FROM evals WHERE eval_run = ? ORDER BY prompt_id", [eval_run]
        ).to_pylist()
    return eval_run, rows, fresh


ROUND_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE NOT coalesce(t.hinted, false)) AS traces_new,
       count(*) FILTER (WHERE NOT coalesce(t.hinted, false) AND s.passed) AS traces_correct,
       count(*) FILTER (WHERE t.hinted) AS traces_hinted
FROM traces t LEFT JOIN scores s ON s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct'
WHERE t.dataset = ? AND t.round = ? AND t.policy = 'teacher'
"""


def _round_counts(location: catalog_mod.CatalogLocation, dataset: str, round_number: int) -> dict[str, int]:
    """This round's teacher traces in the catalog (every run of it): new (unhinted), verified correct, hinted."""
    with catalog_mod.Catalog(location) as cat:
        return cat.arrow(ROUND_COUNTS_SQL, [dataset, round_number]).to_pylist()[0]


def run_round(
    location: catalog_mod.CatalogLocation,
    cfg: RoundConfig,
    teacher: Teacher | None = None,
    student_teacher: Teacher | None = None,
) -> RoundResult:
    """Evaluate the student, send its failures back to the teacher, score the new traces, record the round.

    ``teacher`` replaces the build's backend and ``student_teacher`` the student's model (tests pass
    in-process fakes). A rerun of a finished round sends nothing and writes nothing.
    """
    started_at = records.now()
    catalog_mod.ensure_writable(location)
    round_number = cfg.round or next_round(location, cfg.dataset)
    eval_run, rows, changed = _eval(location, cfg.eval_config(round_number), student_teacher)
    verdicts = [row["correct"] for row in rows if row["correct"] is not None]
    failed = [row for row in rows if row["correct"] == 0]
    sent = 0
    if failed:
        sent, wrote = _send_back(location, cfg, round_number, eval_run, failed, teacher)
        changed = changed or wrote
    low, high = wilson_interval(sum(verdicts), len(verdicts))
    counters = {
        "round": round_number, "prompts": len(rows), "verified": len(verdicts), "correct": sum(verdicts),
        "accuracy": sum(verdicts) / len(verdicts) if verdicts else 0.0, "ci_low": low, "ci_high": high,
        "prompts_failed": len(failed), **_round_counts(location, cfg.dataset, round_number),
    }  # fmt: skip
    run_id = _record(location, cfg, eval_run, counters, started_at, changed)
    student = student_name(cfg.student)
    return RoundResult(cfg.dataset, student=student, eval_run=eval_run, sent=sent, run_id=run_id, **counters)


def _send_back(
    location: catalog_mod.CatalogLocation,
    cfg: RoundConfig,
    round_number: int,
    eval_run: str,
    failed: list[dict[str, Any]],
    teacher: Teacher | None,
) -> tuple[int, bool]:
    """Build, score (and with --hints rationalize) the failed prompts; (requests sent, whether anything was stored)."""
    shaping = round_shaping(cfg, round_number, eval_run, failed)
    built = build(location, cfg.build_config(tuple(r["prompt_id"] for r in failed), round_number), teacher, shaping)
    scored = score(location, ScoreConfig(cfg.dataset, cfg.filters))
    hinted = cfg.hints and _rationalize(location, cfg, round_number, failed, teacher)
    return built.sent, built.snapshot is not None or scored.snapshot is not None or hinted


def _record(
    location: catalog_mod.CatalogLocation,
    cfg: RoundConfig,
    eval_run: str,
    counters: dict[str, Any],
    started_at: Any,
    changed: bool,
) -> str | None:
    """Write the round's ``runs`` row unless this is a rerun that changed nothing; returns its run id."""
    with catalog_mod.Catalog(location) as cat:
        history = round_history(cat, cfg.dataset)
    if not changed and any(h["round"] == counters["round"] and h["eval_run"] == eval_run for h in history):
        return None
    run_id, student = provenance.new_run_id("round"), student_name(cfg.student)
    config = {**asdict(cfg), "round": counters["round"], "eval_run": eval_run, "student": student}
    message = f"round {counters['round']} of {cfg.dataset}: {counters['prompts_failed']} failed prompts sent back"
    with catalog_mod.writing(location, message, {"stage": "round", "run_id": run_id}) as writer:
        writer.insert("runs", provenance.run_row(run_id, "round", cfg.dataset, started_at, config, counters))
    return run_id


def _rationalize(
    location: catalog_mod.CatalogLocation,
    cfg: RoundConfig,
    round_number: int,
    failed: list[dict[str, Any]],
    teacher: Teacher | None,
) -> bool:
    """--hints: ask again, with the reference's answer as a hint, the failed prompts whose round traces all
    failed verification (``loop.hints``); True if that stored anything."""
    teacher_cfg = cfg.build_config(None, round_number)
    prompt_ids = tuple(row["prompt_id"] for row in failed)
    hinted = rationalize(location, RationalizeConfig(cfg.dataset, prompt_ids, round_number, build=teacher_cfg), teacher)
    return hinted.snapshot is not None
