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
from tracebank import catalog, releases
from tracebank.filters.policy import Policy

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
        from tracebank import catalog, releases
        from tracebank.filters.policy import Policy
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
