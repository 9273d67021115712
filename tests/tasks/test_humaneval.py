"""HumanEval through the code checker: canonical solutions pass, their mutants fail.

A mutant that survives must be equivalent on the tests (returns what the canonical solution
returns on every call the tests make, checked by an oracle in the sandbox); a mutant the checker
fails must differ. A sample of problems runs in the fast suite; all 164 in the slow one
(bench/humaneval_sandbox.py prints the same with timings).
"""

import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tracebank import sources
from tracebank.sandbox import run_python
from tracebank.tasks import get_task
from tracebank.tasks.mutation import equivalence_program, mutants

CODE = get_task("code")


def problems() -> list[dict]:
    with gzip.open(sources.resolve("humaneval"), "rt") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def reference(problem: dict) -> str:
    return json.dumps({k: problem[k] for k in ("prompt", "test", "entry_point")})


def first_mutant(problem: dict) -> str | None:
    source = problem["prompt"] + problem["canonical_solution"]
    return next((code for _, code in mutants(source, problem["prompt"].count("\n") + 1)), None)


def equivalent_on_tests(problem: dict, mutant: str) -> bool:
    oracle = equivalence_program(
        problem["prompt"] + problem["canonical_solution"], mutant, problem["test"], problem["entry_point"]
    )
    return run_python([("<solution>", oracle)]).passed


def check_problems(rows: list[dict]) -> None:
    canonical = CODE.verify_many([(p["canonical_solution"], reference(p)) for p in rows])
    assert [(p["task_id"], v.reason) for p, v in zip(rows, canonical, strict=True) if v.correct != 1] == []
    with_mutants = [(p, m) for p in rows if (m := first_mutant(p)) is not None]
    verdicts = CODE.verify_many([(m, reference(p)) for p, m in with_mutants])
    killed = [v.correct == 0 for v in verdicts]
    assert any(killed)
    with ThreadPoolExecutor(2) as pool:  # threads only wait on sandbox processes
        equivalent = list(pool.map(lambda pm: equivalent_on_tests(*pm), with_mutants))
    for (problem, _), was_killed, same in zip(with_mutants, killed, equivalent, strict=True):
        assert was_killed != same, problem["task_id"]


def test_the_package_ships_164_problems_with_tests():
    rows = problems()
    assert len(rows) == 164 and all({"prompt", "test", "entry_point", "canonical_solution"} <= set(p) for p in rows)


def test_sampled_canonical_solutions_pass_and_mutants_fail_unless_equivalent():
    check_problems(problems()[::16])


def test_the_oracle_tells_a_changed_solution_from_the_same_one():
    problem = problems()[0]
    canonical = problem["prompt"] + problem["canonical_solution"]
    assert equivalent_on_tests(problem, canonical)
    assert not equivalent_on_tests(problem, canonical.replace("return True", "return False"))


@pytest.mark.slow
def test_all_164_canonical_solutions_pass_and_mutants_fail_unless_equivalent():
    check_problems(problems())
