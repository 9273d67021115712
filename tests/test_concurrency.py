"""Real processes against one catalog: readers during writes, two writers, a writer killed mid-commit."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
import yaml

from tests.conftest import QUESTIONS
from tracebank import catalog
from tracebank.curate import releases
from tracebank.curate.policy import Policy

pytestmark = pytest.mark.drill  # real processes, servers and faults: make test runs it, make test-fast does not

POLICIES = [
    {
        "name": f"p{i}",
        "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}],
        "max_per_prompt": i,
    }
    for i in (1, 2, 3)
]


def _spawn(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _curate(location, dataset, policy):
    return releases.curate(location, dataset, Policy.from_dict(policy), yaml.safe_dump(policy), policy["name"])


@pytest.fixture
def sqlite_scored(tmp_path):
    """The scored toy dataset in a SQLite-metadata catalog."""
    from tests.conftest import write_jsonl
    from tests.fakes import FakeTeacher
    from tracebank.builders.runner import BuildConfig, build
    from tracebank.filters.runner import ScoreConfig, score
    from tracebank.importer import ColumnMap, ImportConfig, import_data

    location = catalog.locate(tmp_path / "sqlite-catalog")
    catalog.init(location, "sqlite")
    rows = [{"question": q, "answer": f"#### {a}"} for q, a in QUESTIONS.items()]
    import_data(
        location,
        ImportConfig(
            str(write_jsonl(tmp_path / "q.jsonl", rows)), "toy", ColumnMap.parse("prompt=question,reference=answer")
        ),
    )
    build(location, BuildConfig("toy", samples=4), FakeTeacher())
    score(location, ScoreConfig("toy"))
    return location


def test_sqlite_readers_keep_working_while_releases_are_written(sqlite_scored, tmp_path):
    done = tmp_path / "writer-done"
    reader = _spawn(
        f"""
        import os, time, orjson
        from tracebank import catalog
        location = catalog.locate({str(sqlite_scored.home)!r})
        seen, errors, deadline = [], [], time.monotonic() + 300
        while time.monotonic() < deadline:
            finished = os.path.exists({str(done)!r})  # one more query after the writer is done
            try:
                with catalog.Catalog(location) as cat:
                    seen.append(cat.scalar("SELECT count(*) FROM decisions"))
            except Exception as error:
                errors.append(repr(error))
            if finished:
                break
        print(orjson.dumps({{"seen": seen, "errors": errors}}).decode())
        """
    )
    time.sleep(2)  # let the reader start querying
    for policy in POLICIES:
        _curate(sqlite_scored, "toy", policy)
    done.touch()
    out, err = reader.communicate(timeout=320)
    assert reader.returncode == 0, err
    report = orjson.loads(out)
    assert report["errors"] == []
    assert len(report["seen"]) > 5
    assert set(report["seen"]) <= {0, 24, 48, 72}, "a reader must see whole releases or none, never part of one"
    assert report["seen"][-1] == 72


HOLD_WRITER = """
    import sys, time
    from tracebank import catalog
    location = catalog.locate({home!r})
    with catalog.writing(location, "slow writer") as writer:
        writer.execute("DELETE FROM decisions")
        print("holding", flush=True)
        time.sleep({seconds})
"""


def test_second_writer_waits_then_proceeds_or_fails_clearly(location, scored):
    _curate(location, scored, POLICIES[0])
    holder = _spawn(HOLD_WRITER.format(home=str(location.home), seconds=4))
    assert holder.stdout.readline().strip() == "holding"
    impatient = _spawn(
        f"""
        from tracebank import catalog
        from tracebank.curate import releases
        from tracebank.curate.policy import Policy
        policy = {POLICIES[1]!r}
        releases.curate(catalog.locate({str(location.home)!r}), "toy", Policy.from_dict(policy), str(policy), "second")
        """,
        TRACEBANK_LOCK_TIMEOUT="0.5",
    )
    _, err = impatient.communicate(timeout=60)
    assert impatient.returncode != 0
    assert f"another tracebank process (pid {holder.pid}) is writing" in err
    patient = _curate(location, scored, POLICIES[1])  # waits (default 60 s) for the holder to commit
    holder.communicate(timeout=60)
    assert holder.returncode == 0
    with catalog.Catalog(location) as cat:
        assert (
            patient.created and cat.scalar("SELECT count(*) FROM decisions") == 24
        )  # the holder deleted v1's rows first


def test_writer_killed_mid_transaction_leaves_the_catalog_whole(location, scored):
    _curate(location, scored, POLICIES[0])
    with catalog.Catalog(location) as cat:
        before = (cat.snapshot_id(), cat.scalar("SELECT count(*) FROM decisions"))
    holder = _spawn(HOLD_WRITER.format(home=str(location.home), seconds=60))
    assert holder.stdout.readline().strip() == "holding"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with catalog.Catalog(location) as cat:
        assert (cat.snapshot_id(), cat.scalar("SELECT count(*) FROM decisions")) == before
    second = _curate(location, scored, POLICIES[1])  # the lock died with the killed writer
    assert second.created and second.version == 2


OVERLAPPING_BUILD = """
    import orjson
    from tests.builders.conftest import openai_config
    from tracebank import catalog
    from tracebank.builders.runner import build
    config = openai_config("q", {base_url!r}, options={{"concurrency": 16}})
    result = build(catalog.locate({home!r}), config)
    print(orjson.dumps({{"sent": result.sent, "shared": result.shared, "new": result.traces_new}}).decode())
"""


def test_overlapping_builds_store_each_trace_once_and_pay_each_request_once(location, tmp_path):
    """Two builds of one dataset started moments apart (the defect: both committed every trace and
    the teacher answered hundreds of requests twice)."""
    from tests.builders.conftest import import_questions, start_stub

    n = 200
    import_questions(location, tmp_path / "q.jsonl", [f"question {i}?" for i in range(n)])
    with start_stub(latency_s=0.4) as stub:
        code = OVERLAPPING_BUILD.format(base_url=stub.base_url, home=str(location.home))
        first = _spawn(code)
        time.sleep(1.5)  # the second plans while the first is sending (about 5 s)
        second = _spawn(code)
        reports = []
        for process in (first, second):
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
            reports.append(orjson.loads(out.strip().splitlines()[-1]))
        stats = stub.stats()
    with catalog.Catalog(location) as cat:
        rows, distinct = cat.con.execute("SELECT count(*), count(DISTINCT trace_id) FROM traces").fetchone()
    assert rows == distinct == n
    assert stats["answered_twice"] == 0 and stats["answered_bodies"] == n, (stats, reports)
    assert sum(r["sent"] for r in reports) == n, reports  # nobody paid for a request twice
    assert sum(r["new"] for r in reports) == n, reports


CONCURRENT_IMPORT = """
    from tracebank import catalog
    from tracebank.importer import ColumnMap, ImportConfig, import_data
    cfg = ImportConfig({path!r}, "toy", ColumnMap.parse("prompt=question,reference=answer,response=response"))
    import_data(catalog.locate({home!r}), cfg)
"""


def test_concurrent_imports_store_each_prompt_and_trace_once(location, tmp_path):
    from tests.conftest import write_jsonl

    rows = [{"question": f"q {i}?", "answer": f"#### {i}", "response": f"so {i}\n#### {i}"} for i in range(500)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    code = CONCURRENT_IMPORT.format(path=str(path), home=str(location.home))
    catalog.init(location)
    processes = [_spawn(code) for _ in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    with catalog.Catalog(location) as cat:
        prompts = cat.con.execute("SELECT count(*), count(DISTINCT prompt_id) FROM prompts").fetchone()
        traces = cat.con.execute("SELECT count(*), count(DISTINCT trace_id) FROM traces").fetchone()
    assert prompts == (500, 500) and traces == (500, 500)
