"""Crash drills: kill -9 each stage of the real CLI at seeded moments, rerun it, compare with a clean run.

Each drill takes one catalog through build, score, curate and publish; every stage is SIGKILLed
once (the build after a drawn number of teacher replies, so always mid-send; the others at a drawn
moment of their reference run time), then run again. After each rerun the catalog must equal the
reference catalog (same traces, rationales, scores, decisions, releases, snapshots), hold no key
twice, open at every snapshot, keep no staged file; the build's rerun must send exactly the
requests the request cache lacked. ``bench/crash_drill.py`` runs many more (``--drills 50``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tree_fingerprint
from tests.crash_util import Reference, catalog_problems, drill, leftovers_beside, reference_run
from tests.fakes import FakeTeacher
from tracebank.builders.runner import BuildConfig, build
from tracebank.builders.sink import PREFIX, traces_dir
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.data_cards.publish import export_release

pytestmark = pytest.mark.drill  # real processes, servers and faults: make test runs it, make test-fast does not

PROMPTS = 40


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(tmp_path_factory.mktemp("crash-drills"), PROMPTS)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stage_killed_at_any_moment_reruns_to_the_uninterrupted_result(reference, tmp_path, seed):
    results = drill(tmp_path, seed, reference, build_by_replies=True)
    assert [r.stage for r in results] == ["build", "score", "curate", "publish"]
    assert results[0].killed, "the build is killed mid-send: " + results[0].describe()
    failures = [r.describe() for r in results if r.problems]
    assert not failures, "\n".join(failures)


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


BUILD_THEN_REFRESH = """
from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
location = catalog.locate({home!r})
build(location, BuildConfig({dataset!r}, samples=2), FakeTeacher())
build(location, BuildConfig({dataset!r}, samples=2, refresh=True), FakeTeacher())
"""


def test_sweeping_a_killed_builds_files_keeps_what_older_snapshots_read(location, math_dataset):
    """A refresh leaves the first build's file to older snapshots only; the sweep must not take it."""
    # In another process, so that their files are a dead process's, as a killed build's are.
    subprocess.run([sys.executable, "-c", BUILD_THEN_REFRESH.format(home=str(location.home), dataset=math_dataset)],
                   check=True, cwd=Path(__file__).parents[1])  # fmt: skip
    killed = traces_dir(location) / f"{PREFIX}-{dead_pid()}-build-killed.parquet"
    killed.write_bytes(b"")
    build(location, BuildConfig(math_dataset, samples=3), FakeTeacher())  # sweeps before it plans
    assert not killed.exists()
    assert catalog_problems(location) == []


POLICY = {"name": "all", "rules": [], "splits": {"train": 0.5, "test": 0.5}}


def test_an_export_killed_mid_swap_is_put_back_and_its_staging_removed(location, scored, tmp_path):
    """Killed between moving the earlier export aside and putting the new one in place."""
    releases.curate(location, scored, Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "v1")
    target, ref, pid = tmp_path / "export", ReleaseRef.parse(f"{scored}@v1"), dead_pid()
    export_release(location, ref, target)
    exported = tree_fingerprint(target)
    target.rename(target.with_name(f".{target.name}.old-{pid}"))
    (tmp_path / f".{target.name}.staging-{pid}-x1y2").mkdir()
    export_release(location, ref, target)
    assert tree_fingerprint(target) == exported and leftovers_beside(target) == []
    (tmp_path / f".{target.name}.old-{pid}").mkdir()  # killed after the swap, before removing the old one
    export_release(location, ref, target)
    assert tree_fingerprint(target) == exported and leftovers_beside(target) == []
