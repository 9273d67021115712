"""The ``loop`` recipe step: N closed-loop rounds of round → curate → train SFT → held-out eval.

    - loop:
        rounds: 2
        round: {split_hint: train, limit: 8, build: {samples: 2, max_new_tokens: 128}}
        policy: policies/correct-only.yaml      # or a mapping
        train_sft: {max_steps: 8, batch_size: 2}
        eval: {split_hint: test, limit: 8}       # optional: held-out accuracy, with a round-0 baseline

Round n evaluates the current student on the pool and sends its failures back to the teacher
(``tracebank.loop.rounds``), releases the dataset under the policy, fine-tunes the *base* student on
that release (STaR restarts from the base model each iteration, so errors do not compound) and
makes the result the next round's student. ``student`` (default: the embedded model) is the first
round's student and the base every round trains; ``first_round`` (default 1) numbers the rounds.
Each stage skips what is already done, so a rerun of the recipe resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from tracebank import catalog as catalog_mod
from tracebank.builders.base import Teacher
from tracebank.config import check_keys, field_names
from tracebank.curate.policy import Policy
from tracebank.curate.releases import curate
from tracebank.errors import TracebankError, check_at_least
from tracebank.loop.rounds import RoundConfig, RoundResult, run_round, stored_eval
from tracebank.train.evaluate import EvalConfig, evaluate
from tracebank.train.sft import SFTConfig, train_sft

LOOP_KEYS = {"rounds", "student", "first_round", "round", "policy", "train_sft", "eval"}
EVAL_KEYS = {"split_hint", "limit", "max_new_tokens", "batch_size"}


@dataclass(frozen=True)
class LoopConfig:
    round: RoundConfig  # every round's settings; its student is the first round's and the base trained from
    policy: Policy
    policy_text: str
    rounds: int = 2
    train: dict[str, Any] = field(default_factory=dict)  # SFTConfig fields but release, student, output_dir
    eval: dict[str, Any] | None = None  # held-out eval after each round: split_hint, limit, max_new_tokens, ...

    def __post_init__(self) -> None:
        check_at_least(self, 1, "rounds")
        check_keys(self.train, field_names(SFTConfig, "release", "student", "output_dir"), "loop train_sft")
        self.train_config(1, self.round.student)
        if self.eval is not None:
            check_keys(self.eval, EVAL_KEYS, "loop eval")
            if "split_hint" not in self.eval:
                raise TracebankError("loop eval: needs split_hint, the held-out prompts' split hint (e.g. test)")
            self.eval_config(self.round.student, 0)

    def train_config(self, version: int, student: str) -> SFTConfig:
        return SFTConfig(**{**self.train, "release": f"{self.round.dataset}@v{version}", "student": student})

    def eval_config(self, student: str, round_number: int) -> EvalConfig:
        return EvalConfig(student, dataset=self.round.dataset, round=round_number, **(self.eval or {}))


@dataclass(frozen=True)
class HeldOut:
    round: int  # 0: the student before any round
    student: str
    eval_run: str
    correct: int
    verified: int
    accuracy: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class LoopResult:
    rounds: list[RoundResult]
    versions: list[int]  # the release each round's student was trained on
    students: list[str]  # the model each round trained (the next round's student)
    held_out: list[HeldOut]  # the baseline first, then one per round (empty without eval)

    def __str__(self) -> str:
        lines = [f"{len(self.rounds)} closed-loop rounds"]
        for result, version, student in zip(self.rounds, self.versions, self.students, strict=True):
            lines.append(f"  {result}; trained {Path(student).name} on v{version}")
        lines += [
            f"  held-out after round {h.round}: {100 * h.accuracy:.1f}% ({h.correct}/{h.verified}), "
            f"95% CI [{100 * h.ci_low:.1f}%, {100 * h.ci_high:.1f}%]"
            for h in self.held_out
        ]
        return "\n".join(lines)


def _held_out(location: catalog_mod.CatalogLocation, cfg: LoopConfig, student: str, round_number: int) -> HeldOut:
    """The student's held-out accuracy, from a stored eval of the same round when there is one."""
    eval_cfg = cfg.eval_config(student, round_number)
    eval_run = stored_eval(location, eval_cfg) or evaluate(location, eval_cfg).eval_run
    with catalog_mod.Catalog(location) as cat:
        counters = cat.arrow("SELECT unnest(counters) AS c FROM runs WHERE run_id = ?", [eval_run]).column(0)
        values = {c["name"]: c["value"] for c in counters.to_pylist()}
        student_name = cat.scalar("SELECT any_value(student) FROM evals WHERE eval_run = ?", [eval_run])
    return HeldOut(
        round_number, student_name, eval_run, int(values["correct"]), int(values["verified"]),
        values["accuracy"], values["ci_low"], values["ci_high"],
    )  # fmt: skip


def run_loop(location: catalog_mod.CatalogLocation, cfg: LoopConfig, teacher: Teacher | None = None) -> LoopResult:
    """Run rounds ``first .. first + cfg.rounds - 1`` (first: ``cfg.round.round``, default 1).

    Numbered rounds make a rerun resume: a finished round reuses its eval, traces, release and model.

    ``teacher`` replaces the teacher backend (tests pass an in-process fake); students always run for real.
    """
    catalog_mod.ensure_writable(location)
    first = cfg.round.round or 1
    base, student = cfg.round.student, cfg.round.student
    held_out = [_held_out(location, cfg, student, first - 1)] if cfg.eval is not None else []
    results, versions, students = [], [], []
    for number in range(first, first + cfg.rounds):
        result = run_round(location, replace(cfg.round, student=student, round=number), teacher)
        release = curate(location, cfg.round.dataset, cfg.policy, cfg.policy_text, f"closed-loop round {number}")
        trained = train_sft(location, cfg.train_config(release.version, base))
        student = str(trained.output_dir)
        results.append(result)
        versions.append(release.version)
        students.append(student)
        if cfg.eval is not None:
            held_out.append(_held_out(location, cfg, student, number))
    return LoopResult(results, versions, students, held_out)


def loop_step(
    dataset: str, options: dict[str, Any], where: str, base: Path
) -> tuple[Callable[[catalog_mod.CatalogLocation], LoopResult], str]:
    """A recipe's ``loop`` step (see the module docstring): its run function and summary, validated now."""
    options = check_keys(options, LOOP_KEYS, where)
    if "policy" not in options:
        raise TracebankError(f"{where}: needs policy (a file or a mapping) to curate each round's release")
    if isinstance(options["policy"], dict):
        policy = Policy.from_dict(options["policy"], where)
        text = yaml.safe_dump(options["policy"], sort_keys=False)
    else:
        policy, text = Policy.load(base / options["policy"])
    round_options = check_keys(dict(options.get("round") or {}), field_names(RoundConfig, "dataset", "student", "round"), f"{where} round")  # fmt: skip
    if "student" in options:
        round_options["student"] = options["student"]
    round_cfg = RoundConfig(dataset, round=options.get("first_round", 1), **round_options)
    cfg = LoopConfig(
        round_cfg, policy, text, options.get("rounds", 2), options.get("train_sft") or {}, options.get("eval")
    )
    summary = f"{cfg.rounds} closed-loop rounds of {Path(round_cfg.student).name} with {policy.name}"
    return (lambda location: run_loop(location, cfg)), summary
