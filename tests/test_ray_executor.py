"""``--executor ray`` on a real local Ray (loopback only, 2 CPUs, started once for the module).

Scoring on Ray must store exactly the local executor's scores; a build on Ray whose worker is
killed with ``kill -9`` mid-run must still store every trace once and re-send at most the
requests that worker had in flight (the loopback stub server counts them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.builders.conftest import import_questions, openai_config, start_stub
from tests.cli.test_cli import assert_one_line_error, cli
from tests.conftest import write_jsonl
from tests.fakes import QUESTIONS
from tracebank import catalog
from tracebank.builders.cache import RequestCache
from tracebank.builders.runner import BuildConfig, build
from tracebank.cli.recipes import load_recipe
from tracebank.errors import TracebankError
from tracebank.filters import ray_exec
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data

pytestmark = pytest.mark.drill  # real processes, servers and faults: make test runs it, make test-fast does not

# correctness and exact_dup (population: this run's verdicts pick representatives), per-trace safety
# filters, and self_consistency (per-prompt votes) and near_dup (population), which stay on the driver.
FILTERS = ("correctness", "exact_dup", "links", "pii", "phishing", "self_consistency", "near_dup")
COMPARED = "trace_id, filter, metric, value, detail, passed, reason, filter_version"


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


def _traces_file(path: Path) -> Path:
    """Six prompts x five traces: right, wrong, an exact duplicate, a phishing link, personal data."""
    rows = []
    for number, (question, answer) in enumerate(QUESTIONS.items()):
        right = f"Work it out step by step for question {number}.\n#### {answer}"
        rows.append({"id": f"q{number}", "question": question, "answer": f"#### {answer}",
                     "s0": {"text": right}, "s1": {"text": f"I guess.\n#### {int(answer) + 1}"},
                     "s2": {"text": right},
                     "s3": {"text": f"Log in at https://paypa1-secure-login.com/verify first.\n#### {answer}"},
                     "s4": {"text": f"Mail john.doe{number}@example.com or call 555-123-45{number}7.\n#### {answer}"}})  # fmt: skip
    return write_jsonl(path, rows)


def _catalog_with_traces(root: Path, source: Path) -> catalog.CatalogLocation:
    location = catalog.locate(root)
    cmap = ColumnMap.parse("prompt=question,reference=answer,response=*.text,id=id")
    import_data(location, ImportConfig(str(source), "mix", cmap))
    return location


def _stored_scores(location: catalog.CatalogLocation) -> list[tuple]:
    with catalog.Catalog(location) as cat:
        return cat.sql(f"SELECT {COMPARED} FROM scores ORDER BY trace_id, filter, metric").rows()


def test_ray_scores_equal_local_scores(ray_local, tmp_path, monkeypatch):
    source = _traces_file(tmp_path / "mix.jsonl")
    local, on_ray = _catalog_with_traces(tmp_path / "local", source), _catalog_with_traces(tmp_path / "ray", source)
    monkeypatch.setattr(ray_exec, "SHARD_ROWS", 7)  # several shards and batches, not one of each
    monkeypatch.setattr(ray_exec, "BATCH_ROWS", 4)
    score(local, ScoreConfig("mix", FILTERS))
    result = score(on_ray, ScoreConfig("mix", FILTERS, executor="ray"))
    stored = _stored_scores(on_ray)
    assert stored == _stored_scores(local)
    assert result.snapshot is not None and not list(on_ray.home.glob("ray-score-*"))  # shards removed
    stats = {s.filter: s for s in result.filters}
    assert stats["correctness"].failed == 6 and stats["exact_dup"].failed == 6  # the wrong ones, the copies
    assert stats["links"].failed == 6 and stats["pii"].failed == 6
    assert all(s.traces == 30 for s in result.filters)
    # Local again over the Ray-scored catalog: nothing differs, so nothing is written.
    assert score(on_ray, ScoreConfig("mix", FILTERS)).snapshot is None


def test_score_order_and_options_hold_on_ray(ray_local, tmp_path):
    """exact_dup before correctness reads the stored verdicts, as locally; options reach the workers."""
    source = _traces_file(tmp_path / "mix.jsonl")
    local, on_ray = _catalog_with_traces(tmp_path / "local", source), _catalog_with_traces(tmp_path / "ray", source)
    filters, options = ("exact_dup", "correctness", "links"), {"links": {"allow": ["paypa1-secure-login.com"]}}
    score(local, ScoreConfig("mix", filters, options))
    result = score(on_ray, ScoreConfig("mix", filters, options, executor="ray"))
    assert _stored_scores(on_ray) == _stored_scores(local)
    assert {s.filter: s.failed for s in result.filters}["links"] == 0  # the allowed domain is no finding


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor": "spark"}, "unknown executor 'spark'"),
        ({"ray_address": "auto"}, "ray_address is the Ray cluster of --executor ray"),
        ({"executor": "ray", "ray_address": " "}, "ray_address is the Ray cluster"),
    ],
)
def test_executor_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        ScoreConfig("d", **kwargs)
    with pytest.raises(TracebankError, match=message):
        BuildConfig("d", **kwargs)


def test_build_caps_need_the_local_executor():
    for cap in ({"max_cost_usd": 1.0}, {"max_tokens": 1000}):
        with pytest.raises(TracebankError, match="counted by one process"):
            BuildConfig("d", executor="ray", **cap)


def test_cli_does_not_import_ray_unless_asked():
    code = "import sys, tracebank.cli.main, tracebank.filters.runner, tracebank.builders.runner; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def _shard_workers() -> list[psutil.Process]:
    """Ray workers running a build shard now (Ray titles a busy worker ``ray::<task>``)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("ray::send_shard" in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_build_survives_a_killed_worker(ray_local, location, tmp_path):
    questions = [f"Question {i}: what is {i} plus {i}?" for i in range(120)]
    dataset = import_questions(location, tmp_path / "q.jsonl", questions)
    concurrency = 4
    with start_stub(latency_s=0.05) as stub:
        cfg = openai_config(dataset, stub.base_url, executor="ray", options={"concurrency": concurrency})
        outcome: dict[str, object] = {}
        builder = threading.Thread(target=lambda: outcome.update(result=build(location, cfg)))
        builder.start()
        killed, in_flight = None, 0
        deadline = time.monotonic() + 60
        with RequestCache(location.request_cache) as cache:
            while killed is None and time.monotonic() < deadline and builder.is_alive():
                workers, cached = _shard_workers(), len(cache)
                if workers and 10 <= cached < len(questions) - 20:
                    killed = workers[0].pid
                    os.kill(killed, signal.SIGKILL)
                    # Sent but not cached when it died (an upper bound: counted before and after the kill).
                    in_flight = stub.stats()["distinct_bodies"] - cached
                time.sleep(0.05)
        builder.join(120)
        stats = stub.stats()
    assert killed is not None, "no worker was killed mid-run"
    assert 0 < in_flight <= 4 * concurrency  # two workers' sends and what waited to be cached, no more
    result = outcome["result"]
    assert result.traces_new == len(questions) and result.unfinished == 0
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM traces") == len(questions)
        assert cat.scalar("SELECT count(DISTINCT trace_id) FROM traces") == len(questions)
        assert cat.scalar("SELECT count(*) FROM traces WHERE rationale IS NULL") == 0
    assert stats["answered_bodies"] == len(questions)
    # Only what the dead worker had sent and not yet cached goes out again: at most its `concurrency`
    # sends and one burst of answers waiting to be cached. (Not `<= in_flight`: counted at the kill, that
    # misses what the worker had sent and a loaded machine's stub had not read yet; seen: 7 > 4.)
    assert stats["answered_twice"] <= 2 * concurrency
    assert build(location, cfg).sent == 0  # a rerun finds every trace stored


def test_cli_scores_on_a_running_cluster_by_address(ray_local, tmp_path):
    source = _traces_file(tmp_path / "mix.jsonl")
    local, on_ray = _catalog_with_traces(tmp_path / "local", source), _catalog_with_traces(tmp_path / "ray", source)
    address = ray_local.get_runtime_context().gcs_address
    args = [
        "score",
        "mix",
        "--filter",
        "correctness",
        "--filter",
        "links",
        "--executor",
        "ray",
        "--ray-address",
        address,
    ]
    cli(*args, catalog=on_ray.home)
    score(local, ScoreConfig("mix", ("correctness", "links")))
    assert _stored_scores(on_ray) == _stored_scores(local)
    with catalog.Catalog(on_ray) as cat:
        assert '"executor":"ray"' in cat.scalar("SELECT config FROM runs WHERE stage = 'score'")


def test_cli_refuses_a_cap_on_ray_in_one_line(tmp_path):
    done = cli("build", "d", "--executor", "ray", "--max-tokens", "100", catalog=tmp_path / "cat", check=False)
    assert_one_line_error(done, "counted by one process", "--executor local")


def test_recipe_steps_take_the_executor(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset: d\nsteps:\n  - score: {filters: [links], executor: ray}\n  - build: {executor: ray}\n")
    assert [step.kind for step in load_recipe(recipe)[1]] == ["score", "build"]
    recipe.write_text("dataset: d\nsteps:\n  - score: {filters: [links], executor: spark}\n")
    with pytest.raises(TracebankError, match="unknown executor 'spark'"):
        load_recipe(recipe)


def test_the_ray_overhead_benchmark_runs_on_a_running_cluster(ray_local):
    """bench/ray_overhead.py --smoke, on this module's Ray (no start-up of its own): it compares the two
    executors row for row and prints its goals table last (tests/bench.run_smoke)."""
    from tests.bench import run_smoke

    address = ray_local.get_runtime_context().gcs_address
    out = run_smoke("ray_overhead", "--ray-address", address)
    assert "Ray stores the local executor's scores" in out
    assert next(line for line in out.splitlines() if "2,000" in line and "ray/local" not in line).endswith("yes")
