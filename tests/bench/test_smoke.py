"""Every benchmark runs at its smoke size on the code it measures and prints its goals table last.

The goals are not asserted (small sizes are noise): what is checked is that the benchmark still runs
and reports. Benchmarks with smoke tests elsewhere: catalog_scale, filter_cost,
poison_detection, curation_value, train_throughput (tests/bench/), ray_overhead
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


def test_build_throughput():
    out = run_smoke("build_throughput")
    assert "tracebank build" in out and "bare aiohttp baseline" in out
    assert "exactly once: 200 traces, 200 distinct, 200 cached; 0 lost, 0 duplicates" in out


def test_chunk_quality():
    out = run_smoke("chunk_quality", "--show", "0")
    assert "## Step boundaries: 100 reference solutions" in out and "## Wrong arithmetic steps" in out


def test_dedup_throughput():
    out = run_smoke("dedup_throughput", "--scopes", "prompt", "--no-bulk")
    assert "near_dup/prompt: recall >= 0.95" in out and "datasketch" in out


@pytest.mark.slow  # trains and samples the embedded student: minutes on CPU
def test_closed_loop():
    out = run_smoke("closed_loop", timeout=900)
    assert "round  held-out accuracy" in out and "every round is in the round history" in out


@pytest.mark.slow  # trains three students briefly: minutes on CPU
def test_curation_ablation(tmp_path):
    out = run_smoke("curation_ablation", "--dir", str(tmp_path), timeout=900)
    for arm in ("base SmolLM2-135M", "(a) SFT on all", "(b) SFT on curated", "(c) (b) + ORPO"):
        assert arm in out
    assert (tmp_path / "ablation.png").stat().st_size > 0
