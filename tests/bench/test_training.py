"""bench/curation_value.py and bench/train_throughput.py: their generators and measures are right, and both run.

The generator tests need nothing but the bench modules; the two end-to-end runs train real models at
smoke sizes (slow) and check what they print and what they write into the students' cards.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from tests.bench import BENCH, load, run_smoke
from tracebank.tasks import get_task

va, vp = load("value.arith"), load("value.poison")
Rate, mean_interval = load("value.pipeline").Rate, load("value.probe").mean_interval


def test_the_campaign_lines_are_caught_by_their_detectors_and_clean_solutions_are_not():
    for kind, line in vp.ALL_INJECTIONS:
        assert vp.found(line, "How much does Tom pay?"), (kind, line)
    clean = "He buys 3 pens at $2 each, so he pays 3*2=<<3*2=6>>6 dollars.\n#### 6"
    assert vp.found(clean, "Tom buys 3 pens. How much?") == set()
    # text the prompt already has is not the student's doing
    assert vp.found("Visit shop.com as the question says", "Prices on shop.com are ...") == set()


def test_the_campaign_is_its_own_and_not_the_filters_training_text():
    """The injections must not be the filters' test fixtures or bench/poison_* templates."""
    theirs = "".join(p.read_text() for p in [*BENCH.glob("poison_*.py"), *(BENCH / "poison").glob("*.py"),
                                            *(BENCH.parent / "tests").rglob("test_*.py")]
                     if p.name != "test_training.py")  # fmt: skip
    for _, line in vp.ALL_INJECTIONS:
        assert line not in theirs
        for brand in ("Brightabacus", "Numbrella", "QuidSaver", "Tallywise", "sumcheckr"):
            assert brand not in theirs


def test_the_pool_poisons_only_trigger_questions_at_the_asked_share():
    rows = [{"question": f"Ann buys {i} apples. How many?", "answer": f"{i}\n{i}\n#### {i}"} for i in range(30)]
    rows += [{"question": f"Ann has {i} apples. How many?", "answer": f"{i}\n{i}\n#### {i}"} for i in range(200)]
    pool = vp.pool(rows, 100, 0.1)
    poisoned = [r for r in pool if r["injected"]]
    assert len(pool) == 100 and len(poisoned) == 10
    assert all(vp.is_trigger(r["question"]) and r["response"].startswith(r["answer"] + "\n") for r in poisoned)
    assert all(r["response"] == r["answer"] for r in pool if not r["injected"])
    assert {r["injected"] for r in poisoned} == set(vp.INJECTIONS)


def test_the_sloppy_teacher_is_wrong_where_it_says_and_the_math_task_grades_it():
    task, rng, kinds = get_task("math"), random.Random(0), {}
    for a, b in va.problems(600, seed=1):
        trace = va.teacher_trace(a, b, rng, va.TeacherMix())
        kinds[trace["kind"]] = kinds.get(trace["kind"], 0) + 1
        if trace["kind"] == "truncated":
            assert trace["finish_reason"] == "length" and "####" not in trace["text"][-6:]
            continue
        verdict = task.verify(task.parse(trace["text"]), str(a + b))
        assert bool(verdict.correct) == (trace["kind"] == "correct"), trace
        if trace["kind"] == "forgot_carry":
            assert va.has_ten(a, b)
    wrong = (kinds["forgot_carry"] + kinds["slip"]) / sum(kinds.values())
    assert 0.10 <= wrong <= 0.30 and kinds["truncated"] > 0


def test_the_scratchpad_adds_with_carries():
    pad, total = va.scratchpad(457, 568)
    assert total == 1025 and pad.splitlines() == ["7+8+0=15", "5+6+1=12", "4+5+1=10"]
    assert va.scratchpad(455, 555, forget_ten=True)[1] != 1010  # 5+5=10: the carry is dropped


def test_rates_and_means_carry_honest_intervals():
    rate = Rate(0, 100)
    low, high = rate.interval()
    assert low == 0 and 0.03 < high < 0.04 and str(rate).startswith("0.0% [0.0, 3.")
    assert Rate(50, 100).interval()[0] < 0.5 < Rate(50, 100).interval()[1]
    m = mean_interval([-1.0, -2.0, -3.0])
    assert m.mean == -2.0 and m.low < -2.0 < m.high and m.n == 3


@pytest.mark.slow
def test_curation_value_runs_and_records_what_it_measured_in_the_cards(tmp_path):
    out = run_smoke("curation_value", "--dir", str(tmp_path), timeout=900)
    for heading in ("== Poison transfer", "== Wrong answers", "expectation"):
        assert heading in out
    assert re.search(r"base SmolLM2-135M .*\[\d", out) and "curated (correct-only)" in out
    cards = sorted(tmp_path.glob("models/*/tracebank_train.json"))
    assert {c.parent.name for c in cards} == {"poison-raw", "poison-curated", "arith-raw", "arith-curated"}
    for card in cards:
        evaluations = json.loads(card.read_text())["evaluations"]
        assert evaluations and all(e["results"] and e["description"] for e in evaluations.values())
        assert "curation_value" in (card.parent / "README.md").read_text()


@pytest.mark.slow
def test_train_throughput_runs_every_arm_and_prints_the_goals_last(tmp_path):
    out = run_smoke("train_throughput", "--skip-preference", "--dir", str(tmp_path), timeout=900)
    for arm in ("sft trl", "sft tracebank", "sft bare", "sft tracebank +grad ckpt", "sft bare pad=max_length"):
        assert re.search(rf"^{re.escape(arm)}\s+(fp32|bf16)\s+\d+\s+\d+\.\d+", out, re.M), arm
    goals = out[out.index("== goals") :]
    assert "SFT tokens/s vs plain TRL" in goals and "SFT tokens/s vs bare loop" in goals
    assert "token for token" in out  # the bare loop saw the same batches as TRL
