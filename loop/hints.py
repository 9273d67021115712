"""Rationalization: ask the teacher again, with the answer as a hint, on the prompts it got wrong.

STaR's rationalization (Zelikman et al., 2022) and privileged-information distillation: a prompt
whose teacher traces were all scored wrong by ``correctness`` is asked once more with a note
that gives the reference's final answer (``hint: answer``, the default: it leaks least) or the
whole reference solution (``hint: solution``), and asks for a solution that reasons to it without
saying it was given. The new traces are tagged ``hinted`` with strategy ``hint`` and a lineage
saying what was hinted (``{"hint": "answer", "answer": "18", "wrong": 2}``: the reference itself
stays in ``prompts.reference``, never copied), then scored with ``correctness`` and ``hint_leak``.
A policy decides what to keep: ``recipes/policies/hinted.yaml`` keeps a hinted trace only when it
verifies and does not leak the hint.

Requests are ordinary build requests (``builders.plans.Shaping``), so the request cache and the
catalog make a rerun send nothing it has sent before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson
import pyarrow as pa

from tracebank import catalog as catalog_mod
from tracebank.builders.base import Teacher
from tracebank.builders.plans import Shaping, iter_requests, shaped
from tracebank.builders.runner import BuildConfig, build, trace_id
from tracebank.errors import TracebankError, check_at_least
from tracebank.filters.memorization.hint_leak import HINT_MODES, hint_note
from tracebank.filters.runner import ScoreConfig, score
from tracebank.tasks.math import reference_answer

LABEL = "hint"  # the strategy label of hinted traces
# How a task's reference yields the final answer a hint gives (tasks without one are not hinted:
# a code reference is its tests, and a text task cannot be verified).
FINAL_ANSWERS: dict[str, Callable[[str], str | None]] = {"math": lambda reference: reference_answer(reference)[0]}


@dataclass(frozen=True)
class RationalizeConfig:
    dataset: str
    prompt_ids: tuple[str, ...] | None = None  # only these prompts (a closed-loop round's); None: every prompt
    round: int | None = None  # only teacher traces of this round count; the hinted traces are tagged with it
    samples: int = 1  # hinted traces per failed prompt
    hint: str = "answer"  # answer: the reference's final answer | solution: the whole reference solution
    limit: int | None = None  # ask at most N failed prompts (the first by prompt_id)
    build: BuildConfig | None = None  # the teacher: backend, model, sampling (default BuildConfig(dataset))

    def __post_init__(self) -> None:
        if self.hint not in HINT_MODES:
            raise TracebankError(f"hint must be one of {', '.join(HINT_MODES)}, got {self.hint!r}")
        check_at_least(self, 1, "samples", "limit", "round")
        if self.prompt_ids is not None:
            object.__setattr__(self, "prompt_ids", tuple(self.prompt_ids))
        teacher = self.build if self.build is not None else BuildConfig(self.dataset)
        if teacher.dataset != self.dataset:
            raise TracebankError(f"the build settings are for dataset {teacher.dataset!r}, not {self.dataset!r}")
        if teacher.policy != "teacher":
            raise TracebankError("hints are for the teacher: the build settings' policy must be 'teacher'")
        if teacher.prompt_ids is not None or teacher.limit is not None or teacher.split_hint is not None:
            raise TracebankError(
                "rationalize chooses the prompts itself: give prompt_ids and limit to it, not to its build settings"
            )
        if "fewshot" in teacher.plan().axes():
            raise TracebankError("the fewshot strategy cannot be hinted: its shots carry other prompts' references")
        object.__setattr__(self, "build", teacher)

    def teacher_config(self, prompt_ids: tuple[str, ...]) -> BuildConfig:
        """The build that asks ``prompt_ids`` with hints."""
        assert self.build is not None  # set in __post_init__
        return replace(self.build, samples=self.samples, prompt_ids=prompt_ids)


@dataclass(frozen=True)
class RationalizeResult:
    dataset: str
    prompts_failed: int  # prompts whose teacher traces were all scored wrong
    prompts_solved: int  # prompts with at least one correct teacher trace (not asked)
    skipped_no_reference: int  # prompts with teacher traces but no reference to hint with
    skipped_no_answer: int  # failed prompts whose reference yields no final answer (or whose task has none)
    prompts_asked: int
    traces: int  # hinted traces of the asked prompts now stored
    verified: int  # of those, scored correct
    leaked: int  # of those, flagged by hint_leak
    usable: int  # verified and not leaked: what hinted.yaml keeps
    sent: int  # requests that reached the teacher in this run
    scored_first: int  # unscored teacher traces this run scored before choosing prompts
    snapshot: int | None  # the build's commit (None: nothing new)


_OWN_TRACES = """
    FROM traces t LEFT JOIN scores s
      ON s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct'
    WHERE t.dataset = ? AND t.policy = 'teacher' AND NOT coalesce(t.hinted, false) AND t.rationale IS NOT NULL
"""


def _own_traces(cfg: RationalizeConfig) -> tuple[str, list]:
    """The FROM/WHERE of the teacher's own (unhinted) answered traces that ``cfg`` looks at, with parameters."""
    sql, params = _OWN_TRACES, [cfg.dataset]
    if cfg.round is not None:
        sql, params = sql + " AND t.round = ?", [*params, cfg.round]
    if cfg.prompt_ids is not None:
        sql, params = sql + " AND list_contains(?, t.prompt_id)", [*params, list(cfg.prompt_ids)]
    return sql, params


def _score_unscored(location: catalog_mod.CatalogLocation, cfg: RationalizeConfig) -> int:
    """Score ``correctness`` first when some of the teacher traces looked at have no verdict; returns how many."""
    sql, params = _own_traces(cfg)
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(cfg.dataset)
        unscored = cat.scalar(f"SELECT count(*) {sql} AND s.trace_id IS NULL", params)
    if unscored:
        score(location, ScoreConfig(cfg.dataset, ("correctness",)))
    return int(unscored)


def _candidates(location: catalog_mod.CatalogLocation, cfg: RationalizeConfig) -> pa.Table:
    """Per prompt with teacher traces: its task, messages, reference, and how many traces were judged/wrong/right."""
    sql, params = _own_traces(cfg)
    with catalog_mod.Catalog(location) as cat:
        return cat.arrow(
            f"""WITH own AS (
                    SELECT t.prompt_id, count(*) AS traces, count(*) FILTER (WHERE s.passed = false) AS wrong,
                           count(*) FILTER (WHERE s.passed) AS correct {sql} GROUP BY t.prompt_id)
                SELECT own.*, p.task, p.messages, p.reference
                FROM own JOIN prompts p ON p.prompt_id = own.prompt_id AND p.dataset = ?
                ORDER BY own.prompt_id""",
            [*params, cfg.dataset],
        )


def _hints(candidates: list[dict], cfg: RationalizeConfig) -> tuple[list[dict], dict[str, int]]:
    """The failed prompts to ask (each with its final answer), and counts of those skipped and why."""
    counts = {"prompts_failed": 0, "prompts_solved": 0, "skipped_no_reference": 0, "skipped_no_answer": 0}
    asked = []
    for row in candidates:
        if row["reference"] is None:
            counts["skipped_no_reference"] += 1
        elif row["correct"]:
            counts["prompts_solved"] += 1
        elif row["wrong"] == row["traces"]:  # every answered trace judged, and judged wrong
            counts["prompts_failed"] += 1
            final = FINAL_ANSWERS.get(row["task"], lambda _: None)(row["reference"])
            if final is None:
                counts["skipped_no_answer"] += 1
            elif cfg.limit is None or len(asked) < cfg.limit:
                asked.append({**row, "answer": final})
    return asked, counts


def shaping_for(asked: list[dict], cfg: RationalizeConfig) -> Shaping:
    """The hint notes and tags of a rationalizing build: the lineage names the hint, not the reference."""
    notes = {row["prompt_id"]: hint_note(cfg.hint, row["answer"], row["reference"]) for row in asked}
    lineage = {
        row["prompt_id"]: orjson.dumps(
            {"hint": cfg.hint, "answer": row["answer"], "wrong": row["wrong"]}, option=orjson.OPT_SORT_KEYS
        ).decode()
        for row in asked
    }
    return Shaping(LABEL, notes, round=cfg.round, hinted=True, lineage=lineage)


def _trace_ids(asked: list[dict], build_cfg: BuildConfig, shaping: Shaping) -> list[str]:
    """The ids of the hinted traces this build plans (stored now, or before by an earlier run)."""
    requests = iter_requests(asked, build_cfg.model, build_cfg.params(), build_cfg.samples, build_cfg.seed,
                             build_cfg.plan())  # fmt: skip
    return [trace_id(build_cfg.dataset, build_cfg.policy, r.key) for r in shaped(requests, shaping)]


def _tally(location: catalog_mod.CatalogLocation, dataset: str, ids: list[str]) -> dict[str, int]:
    """How many of ``ids`` are stored, verified, leaking, and usable (verified and not leaking)."""
    with catalog_mod.Catalog(location) as cat:
        row = cat.arrow(
            """WITH mine AS (SELECT trace_id FROM traces WHERE dataset = ? AND list_contains(?, trace_id)),
                    verdicts AS (
                        SELECT trace_id,
                               bool_or(passed) FILTER (WHERE filter = 'correctness') AS verified,
                               bool_or(NOT passed) FILTER (WHERE filter = 'hint_leak') AS leaked
                        FROM scores WHERE dataset = ? AND filter IN ('correctness', 'hint_leak') GROUP BY trace_id)
               SELECT count(*) AS traces, count(*) FILTER (WHERE verified) AS verified,
                      count(*) FILTER (WHERE leaked) AS leaked,
                      count(*) FILTER (WHERE verified AND NOT coalesce(leaked, true)) AS usable
               FROM mine LEFT JOIN verdicts USING (trace_id)""",
            [dataset, ids, dataset],
        ).to_pylist()[0]
    return {name: int(value) for name, value in row.items()}


def rationalize(
    location: catalog_mod.CatalogLocation, cfg: RationalizeConfig, teacher: Teacher | None = None
) -> RationalizeResult:
    """Ask the teacher, with a hint, every prompt (of ``cfg.prompt_ids``) that has a reference and whose
    teacher traces (of ``cfg.round``) were all scored wrong; store the hinted traces, score them with
    ``correctness`` and ``hint_leak``, and count what verified and what leaked.

    Teacher traces without a correctness verdict are scored first. ``teacher`` replaces the configured
    backend (tests pass a fake). Raises :class:`~tracebank.builders.runner.BuildIncomplete` after
    committing what finished when some requests did not finish; a rerun sends only those.
    """
    scored_first = _score_unscored(location, cfg)
    asked, counts = _hints(_candidates(location, cfg).to_pylist(), cfg)
    if not asked:
        return RationalizeResult(cfg.dataset, **counts, prompts_asked=0, traces=0, verified=0, leaked=0, usable=0,
                                 sent=0, scored_first=scored_first, snapshot=None)  # fmt: skip
    shaping = shaping_for(asked, cfg)
    build_cfg = cfg.teacher_config(tuple(row["prompt_id"] for row in asked))
    built = build(location, build_cfg, teacher, shaping)
    score(location, ScoreConfig(cfg.dataset, ("correctness", "hint_leak")))
    tally = _tally(location, cfg.dataset, _trace_ids(asked, build_cfg, shaping))
    return RationalizeResult(cfg.dataset, **counts, prompts_asked=len(asked), **tally, sent=built.sent,
                             scored_first=scored_first, snapshot=built.snapshot)  # fmt: skip


def describe(result: RationalizeResult) -> str:
    """What a rationalize run did, in one line."""
    if result.prompts_failed + result.prompts_solved + result.skipped_no_reference == 0:
        return f"{result.dataset}: no judged teacher traces to look at (tracebank build the teacher's traces first)"
    skipped = f"{result.skipped_no_reference} without a reference, {result.skipped_no_answer} without a final answer"
    return (
        f"{result.dataset}: {result.prompts_failed} prompts failed by the teacher ({result.prompts_solved} solved; "
        f"skipped {skipped}); asked {result.prompts_asked} with hints ({result.sent} requests sent): "
        f"{result.traces} hinted traces, {result.verified} verified, {result.leaked} leak the hint, "
        f"{result.usable} usable"
        + (f" [dim](snapshot {result.snapshot})[/]" if result.snapshot is not None else " [dim](nothing new)[/]")
    )
