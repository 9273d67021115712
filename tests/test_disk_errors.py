"""A full disk and a read-only catalog: one clear error line, nothing lost, and a rerun finishes the work.

The full disk is a small tmpfs mounted for the test; the read-only catalog is a read-only bind
mount in a private mount namespace (``unshare -m``), since root (as here and in CI) ignores file
modes but not a read-only mount. Both need root and are skipped, saying why, where they cannot be made.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import tree_fingerprint
from tests.crash_util import (
    DATASET,
    SAMPLES,
    Pipeline,
    answered_bodies,
    answered_total,
    cached_keys,
    catalog_problems,
    leftovers_beside,
    request_bodies,
    resend_problems,
    state,
    tracebank,
    write_inputs,
)
from tracebank.builders.sink import PREFIX, traces_dir
from tracebank.builders.stub_server import StubOptions, StubServer

pytestmark = pytest.mark.drill  # real processes, servers and faults: make test runs it, make test-fast does not

PROMPTS = 30
BALLAST = "ballast"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (the full disk) needs root")
    path = tmp_path / "disk"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until about ``leave`` bytes are free."""
    stats = os.statvfs(disk)
    left = stats.f_bavail * stats.f_frsize - leave
    with open(disk / BALLAST, "wb") as ballast:
        while left > 0:
            try:
                ballast.write(b"\0" * min(left, 1 << 20))
                ballast.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break
            left -= 1 << 20


def free(disk: Path) -> None:
    (disk / BALLAST).unlink()


def assert_one_clear_line(
    done: subprocess.CompletedProcess, where: Path, reason: str, advice: str = "run the same command again"
) -> str:
    """Exit 1 with one line on stderr naming ``where``, the reason and what to do; returns the line."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    line = lines[0]
    assert line.startswith("error: cannot write") and str(where) in line and reason in line, line
    assert advice in line, line
    return line


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer(StubOptions()) as server:
        yield server


def pipeline_on(home: Path, tmp_path: Path, stub: StubServer) -> Pipeline:
    questions, policy = write_inputs(tmp_path / "inputs", PROMPTS)
    return Pipeline(home, questions, policy, stub.base_url)


def attempt_while(pipeline: Pipeline, stage: str, until: Callable[[], bool], then: Callable[[], None]):
    """Run ``stage``; once ``until()`` holds (or it has ended), call ``then()``; wait for the end."""
    process = subprocess.Popen(pipeline.command(stage), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while process.poll() is None and not until():
        time.sleep(0.002)
    then()
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def hold_write_lock(location) -> Callable[[], None]:
    """Take the catalog's write lock (a stage's commit waits for it, up to 60 s); returns its release."""
    fd = os.open(location.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return lambda: os.close(fd)


def test_build_on_a_full_disk_sends_nothing(disk, tmp_path, stub):
    pipeline = pipeline_on(disk / "catalog", tmp_path, stub)
    pipeline.prepare("import")
    before = state(pipeline.location)
    fill(disk, 0)
    assert_one_clear_line(pipeline.attempt("build"), pipeline.location.request_cache, "disk is full")
    assert answered_bodies(stub) == {} and state(pipeline.location) == before
    free(disk)
    pipeline.run("build")
    assert len(state(pipeline.location)["traces"]) == PROMPTS * SAMPLES


def test_a_disk_that_fills_while_responses_arrive_keeps_those_cached(disk, tmp_path):
    """The rerun sends only what the cache lacks: each cached response was paid for once."""
    with StubServer(StubOptions(latency_s=0.05)) as stub:
        pipeline = pipeline_on(disk / "catalog", tmp_path, stub)
        pipeline.prepare("import")
        before = state(pipeline.location)
        done = attempt_while(pipeline, "build", lambda: answered_total(stub) >= PROMPTS // 2, lambda: fill(disk, 0))
        paid_for, cached = answered_bodies(stub), cached_keys(pipeline.location)
        assert_one_clear_line(done, pipeline.location.request_cache, "disk is full")
        assert state(pipeline.location) == before and 0 < len(cached) < PROMPTS * SAMPLES
        bodies = request_bodies(pipeline.location, stub.base_url)
        free(disk)
        pipeline.run("build")
        assert resend_problems(bodies, paid_for, cached, answered_bodies(stub)) == []
    assert catalog_problems(pipeline.location) == []
    assert len(state(pipeline.location)["traces"]) == PROMPTS * SAMPLES


def test_a_build_that_cannot_commit_keeps_every_response_and_the_rerun_sends_none(disk, tmp_path, stub):
    pipeline = pipeline_on(disk / "catalog", tmp_path, stub)
    pipeline.prepare("import")
    before, every = state(pipeline.location), PROMPTS * SAMPLES
    release = hold_write_lock(pipeline.location)  # the disk fills once every response is cached, before the commit

    def fill_then_release() -> None:
        try:
            fill(disk, 0)
        finally:
            release()

    done = attempt_while(pipeline, "build", lambda: len(cached_keys(pipeline.location)) == every, fill_then_release)
    assert_one_clear_line(done, pipeline.location.home, "No space left on device")
    assert state(pipeline.location) == before
    assert sum(answered_bodies(stub).values()) == every == len(cached_keys(pipeline.location))
    free(disk)
    pipeline.run("build")
    assert sum(answered_bodies(stub).values()) == every, "the rerun found every response in the cache"
    assert catalog_problems(pipeline.location) == []
    assert len(state(pipeline.location)["traces"]) == every


@pytest.mark.parametrize("stage", ["score", "curate"])
def test_score_and_curate_on_a_full_disk_commit_nothing(disk, tmp_path, stub, stage):
    pipeline = pipeline_on(disk / "catalog", tmp_path, stub)
    pipeline.prepare(*("import", "build", "score")[: 2 if stage == "score" else 3])
    before = state(pipeline.location)
    fill(disk, 0)
    assert_one_clear_line(pipeline.attempt(stage), pipeline.location.home, "No space left on device")
    assert state(pipeline.location) == before
    free(disk)
    pipeline.run(stage)
    after = state(pipeline.location)
    assert after["scores" if stage == "score" else "decisions"], "the rerun stores what the failed run could not"
    assert catalog_problems(pipeline.location) == []


def test_publish_to_a_full_disk_leaves_the_earlier_export(disk, tmp_path, stub):
    pipeline = pipeline_on(tmp_path / "catalog", tmp_path, stub)
    pipeline.prepare("import", "build", "score", "curate")
    target = disk / "published"
    command = tracebank("publish", f"{DATASET}@v1", "--to", target, "--catalog", pipeline.home)
    assert subprocess.run(command, capture_output=True).returncode == 0
    exported = tree_fingerprint(target)
    fill(disk, 0)
    done = subprocess.run(command, capture_output=True, text=True)
    assert_one_clear_line(done, disk, "No space left on device")
    assert tree_fingerprint(target) == exported and leftovers_beside(target) == []
    free(disk)
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert tree_fingerprint(target) == exported and leftovers_beside(target) == []


def run_read_only(home: Path, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` in a private mount namespace where ``home`` is a read-only bind mount of itself."""
    mount = f"mount --bind {shlex.quote(str(home))} {shlex.quote(str(home))} && "
    mount += f'mount -o remount,bind,ro {shlex.quote(str(home))} && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", mount, "sh", *command], capture_output=True, text=True)


def test_a_read_only_catalog_is_one_clear_error_and_stays_as_it_was(tmp_path, stub):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.strip()}")
    pipeline = pipeline_on(tmp_path / "catalog", tmp_path, stub)
    pipeline.prepare("import", "build", "score")
    # A killed build's staged file: the read-only build must not trip over removing it.
    (traces_dir(pipeline.location) / f"{PREFIX}-999999999-build-killed.parquet").write_bytes(b"")
    before, answered = tree_fingerprint(pipeline.home), sum(answered_bodies(stub).values())
    more = [*pipeline.command("build"), "--samples", str(SAMPLES + 1)]  # requests the cache does not have
    for command in (more, pipeline.command("score"), pipeline.command("curate")):
        done = run_read_only(pipeline.home, command)
        assert_one_clear_line(done, pipeline.home, "Read-only file system", "choose a writable directory")
    assert sum(answered_bodies(stub).values()) == answered, "nothing is sent that could not be stored"
    query = tracebank("sql", "SELECT count(*) AS n FROM traces", "-f", "csv", "--catalog", pipeline.home)
    reading = run_read_only(pipeline.home, query)
    assert reading.returncode == 0 and reading.stdout.split() == ["n", str(PROMPTS * SAMPLES)], reading.stderr
    assert tree_fingerprint(pipeline.home) == before
