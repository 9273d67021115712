"""Every benchmark runs at its smoke size on the code it measures and prints its goals table last.

The goals are not asserted (small sizes are noise): what is checked is that the benchmark still runs
and reports. Benchmarks with smoke tests elsewhere: catalog_scale, filter_cost, chunk_quality,
dedup_throughput, poison_detection, curation_value, train_throughput (tests/bench/), ray_overhead
(tests/test_ray_executor.py, on its running Ray), crash_drill (here, a drill).
"""

import re

import pytest

from tests.bench import run_smoke


def test_verify_agreement():
    out = run_smoke("verify_agreement")
    assert re.search(r"traces: 40  agree with labels: \d+/40", out) and "traces/s" in out


def test_humaneval_sandbox():
    out = run_smoke("humaneval_sandbox")
    assert "canonical solutions: 5/5 pass" in out and "mutants:" in out


def test_memorization_recall():
    out = run_smoke("memorization_recall")
    for kind in ("real_correct", "copy_other_reference", "copy_train_reference", "loop", "half_other_reference"):
        assert kind in out


@pytest.mark.drill
def test_crash_drill():
    out = run_smoke("crash_drill")
    assert "drill seed 1 done" in out and "passed" in out
