"""Crash drills: run each stage of the real CLI, kill -9 it at a seeded moment, run it again, compare.

A drill takes one catalog through import, build, score, curate and publish. Each stage's
``tracebank`` command runs in a subprocess against a loopback stub teacher that lives in this
process (its counters outlive the killed client); the command is SIGKILLed at a moment drawn from
the seed, run again to completion, and the catalog is compared with a reference catalog that was
built by the same commands without a kill. ``tests/test_crash_drills.py`` runs a few drills,
``bench/crash_drill.py`` many.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import xxhash

from tracebank import catalog
from tracebank.builders.openai_backend import OpenAIOptions, _Engine
from tracebank.builders.runner import BuildConfig, _plan
from tracebank.builders.sink import PREFIX
from tracebank.builders.stub_server import StubOptions, StubServer

STAGES = ("build", "score", "curate", "publish")
DATASET = "drill"
MODEL = "stub-teacher"
SAMPLES = 2
MAX_NEW_TOKENS = 64
CONCURRENCY = 4
POLICY = """\
name: drill
rules:
  - name: failed
    when: "finish_reason = 'error' OR rationale IS NULL"
    action: drop
  - name: duplicate
    when: "exact_dup.is_duplicate = 1"
    action: drop
default: keep
max_per_prompt: 1
order_by: "trace_id"
splits: {train: 0.8, test: 0.2}
"""
# What a stage leaves in the catalog, compared between a drilled and a reference catalog. Left out:
# times, run ids and inputs_digest (it names DuckLake's data files, whose names are random UUIDs).
STATE_SQL = {
    "traces": "SELECT trace_id, prompt_id, request_key, sample_idx, rationale, answer, finish_reason, "
    "prompt_tokens, completion_tokens FROM traces ORDER BY trace_id",
    "scores": "SELECT trace_id, filter, metric, value, detail, passed, reason, filter_version FROM scores ORDER BY ALL",
    "decisions": "SELECT version, trace_id, prompt_id, keep, rule, reason, split, rank FROM decisions ORDER BY ALL",
    "releases": "SELECT version, snapshot_id, message, policy_name, config, decisions_digest, counts, teachers "
    "FROM releases ORDER BY version",
    "runs": "SELECT stage, count(*) AS n FROM runs GROUP BY stage ORDER BY stage",
    "snapshots": "SELECT snapshot_id, changes FROM ducklake_snapshots('lake') ORDER BY snapshot_id",
}
UNIQUE_SQL = {  # each table's key: a row twice is a duplicate commit
    "traces": "SELECT count(*) - count(DISTINCT trace_id) FROM traces",
    "scores": "SELECT count(*) - count(DISTINCT (trace_id, filter, metric)) FROM scores",
    "decisions": "SELECT count(*) - count(DISTINCT (version, trace_id)) FROM decisions",
    "releases": "SELECT count(*) - count(DISTINCT version) FROM releases",
}


def tracebank(*args: str | Path) -> list[str]:
    """The real CLI, in this interpreter's environment."""
    return [sys.executable, "-m", "tracebank", *map(str, args)]


def write_inputs(directory: Path, prompts: int) -> tuple[Path, Path]:
    """A math dataset of ``prompts`` questions and the drill's curation policy; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"Sam has {i} apples and buys {i % 7 + 2} more. How many apples does Sam have?",
             "answer": f"#### {i + i % 7 + 2}"} for i in range(prompts)]  # fmt: skip
    questions, policy = directory / "questions.jsonl", directory / "policy.yaml"
    questions.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    policy.write_text(POLICY)
    return questions, policy


@dataclass
class Pipeline:
    """One catalog and the command of each stage, against the stub at ``base_url``."""

    home: Path
    questions: Path
    policy: Path
    base_url: str
    seconds: dict[str, float] = field(default_factory=dict)  # the last uninterrupted run of each stage

    @property
    def location(self) -> catalog.CatalogLocation:
        return catalog.locate(self.home)

    @property
    def published(self) -> Path:
        return self.home.parent / f"{self.home.name}-published"

    def command(self, stage: str) -> list[str]:
        args: dict[str, list[Any]] = {
            "import": ["import", self.questions, "-d", DATASET, "--map", "prompt=question,reference=answer"],
            "build": ["build", DATASET, "--backend", "openai", "--base-url", self.base_url, "--model", MODEL,
                      "--samples", SAMPLES, "--max-new-tokens", MAX_NEW_TOKENS, "--concurrency", CONCURRENCY],
            "score": ["score", DATASET],
            "curate": ["curate", DATASET, "-p", self.policy, "-m", "drill"],
            "publish": ["publish", f"{DATASET}@v1", "--to", self.published],
        }  # fmt: skip
        return tracebank(*args[stage], "--catalog", self.home)

    def attempt(self, stage: str) -> subprocess.CompletedProcess:
        """Run ``stage`` to its end, whatever its exit status."""
        return subprocess.run(self.command(stage), capture_output=True, text=True, timeout=300)

    def run(self, stage: str) -> None:
        """Run ``stage`` to completion; a non-zero exit fails with its stderr."""
        started = time.perf_counter()
        done = self.attempt(stage)
        assert done.returncode == 0, f"{stage} exited {done.returncode}: {done.stderr[-3000:]}"
        self.seconds[stage] = time.perf_counter() - started

    def prepare(self, *stages: str) -> None:
        """Run ``stages`` in this process through the Python API (the same work as the CLI, without its start-up)."""
        from tracebank.builders.runner import build
        from tracebank.curate import releases
        from tracebank.curate.policy import Policy
        from tracebank.filters.runner import ScoreConfig, score
        from tracebank.importer import ColumnMap, ImportConfig, import_data

        for stage in stages:
            if stage == "import":
                columns = ColumnMap.parse("prompt=question,reference=answer")
                import_data(self.location, ImportConfig(str(self.questions), DATASET, columns))
            elif stage == "build":
                build(self.location, build_config(self.base_url))
            elif stage == "score":
                score(self.location, ScoreConfig(DATASET))
            elif stage == "curate":
                policy, text = Policy.load(self.policy)
                releases.curate(self.location, DATASET, policy, text, "drill")
            else:
                raise ValueError(f"prepare runs import, build, score and curate, not {stage!r}")

    def run_killed(self, stage: str, until: Callable[[subprocess.Popen], bool]) -> bool:
        """Start ``stage`` and SIGKILL it as soon as ``until(process)`` holds; False if it exited first."""
        started = time.perf_counter()
        process = subprocess.Popen(self.command(stage), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while process.poll() is None and not until(process):
                time.sleep(0.002)
            if process.poll() is not None:
                _, err = process.communicate()
                assert process.returncode == 0, f"{stage} exited {process.returncode}: {err.decode()[-3000:]}"
                self.seconds[stage] = time.perf_counter() - started
                return False
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
            return True
        finally:
            if process.poll() is None:
                process.kill()


def after(seconds: float) -> Callable[[subprocess.Popen], bool]:
    deadline = time.perf_counter() + seconds
    return lambda process: time.perf_counter() >= deadline


def answered_total(stub: StubServer) -> int:
    """Replies the stub has sent, asked over HTTP (its own event loop reads its counters)."""
    with urllib.request.urlopen(stub.base_url.removesuffix("/v1") + "/stats", timeout=10) as reply:
        return int(orjson.loads(reply.read())["answered"])


def after_answers(stub: StubServer, count: int, then_s: float) -> Callable[[subprocess.Popen], bool]:
    """True ``then_s`` seconds after the stub has answered ``count`` requests."""
    reached: list[float] = []

    def until(process: subprocess.Popen) -> bool:
        if not reached and answered_total(stub) >= count:
            reached.append(time.perf_counter())
        return bool(reached) and time.perf_counter() - reached[0] >= then_s

    return until


def answered_bodies(stub: StubServer) -> dict[int, int]:
    """{request body hash: 200 replies sent}; dict() copies a Counter in one step under the GIL."""
    return dict(stub.teacher.answered)


def build_config(base_url: str) -> BuildConfig:
    """What ``Pipeline.command("build")`` asks for."""
    return BuildConfig(DATASET, backend="openai", model=MODEL, samples=SAMPLES, max_new_tokens=MAX_NEW_TOKENS,
                       options={"base_url": base_url, "concurrency": CONCURRENCY})  # fmt: skip


def request_bodies(location: catalog.CatalogLocation, base_url: str) -> dict[str, int]:
    """{request key: hash of the HTTP body the openai backend sends for it}, as the stub counts bodies."""
    cfg = build_config(base_url)
    engine = _Engine(MODEL, OpenAIOptions(base_url=base_url), transport=None)  # the backend's own body
    with catalog.Catalog(location) as cat:
        prompts = cat.arrow("SELECT prompt_id, task, messages FROM prompts WHERE dataset = ? ORDER BY prompt_id",
                            [DATASET])  # fmt: skip
    return {r.key: xxhash.xxh64_intdigest(engine._body([r])) for r in _plan(prompts, cfg, [])}


def cached_keys(location: catalog.CatalogLocation) -> set[str]:
    """Request keys whose responses are in the request cache."""
    if not location.request_cache.exists():
        return set()
    con = sqlite3.connect(f"file:{location.request_cache}?mode=ro", uri=True)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'responses'").fetchone():
            return set()  # a cache the disk let open but not set up
        return {key for (key,) in con.execute("SELECT key FROM responses")}
    finally:
        con.close()


def state(location: catalog.CatalogLocation) -> dict[str, list[tuple]]:
    """The rows every stage leaves, comparable across catalogs (see STATE_SQL)."""
    with catalog.Catalog(location) as cat:
        rows = {name: cat.con.execute(query).fetchall() for name, query in STATE_SQL.items()}
    # A snapshot's changes list the tables it touched in no fixed order.
    rows["snapshots"] = [(n, {k: sorted(v) for k, v in changes.items()}) for n, changes in rows["snapshots"]]
    return rows


def catalog_problems(location: catalog.CatalogLocation) -> list[str]:
    """Duplicate keys, snapshots that cannot be read, staged files no snapshot registered."""
    problems = []
    with catalog.Catalog(location) as cat:
        for table, query in UNIQUE_SQL.items():
            if twice := cat.scalar(query):
                problems.append(f"{table}: {twice} rows repeat a key")
        snapshots = [row[0] for row in cat.con.execute("SELECT snapshot_id FROM ducklake_snapshots('lake')").fetchall()]
        files = cat.con.execute("SELECT path FROM __ducklake_metadata_lake.ducklake_data_file").fetchall()
        registered = {Path(path).name for (path,) in files}
    for snapshot in snapshots:
        try:
            with catalog.Catalog(location, snapshot=snapshot) as cat:
                tables = [r[0] for r in cat.con.execute("SHOW TABLES").fetchall()]
                for table in tables:  # every row of every table: each data file it names must be readable
                    cat.con.execute(f"SELECT * FROM {table}").to_arrow_table()
        except Exception as error:
            problems.append(f"snapshot {snapshot} cannot be read: {str(error).splitlines()[0]}")
    staged = sorted(p.name for p in location.data_path.rglob(f"{PREFIX}-*") if p.name not in registered)
    if staged:
        problems.append(f"staged files no snapshot registered: {staged}")
    return problems


def orphaned_files(location: catalog.CatalogLocation) -> list[str]:
    """Parquet files under the data path that no snapshot references (DuckLake's own writes of a killed stage)."""
    with catalog.Catalog(location) as cat:
        known = {Path(p).name for (p,) in cat.con.execute(
            "SELECT path FROM __ducklake_metadata_lake.ducklake_data_file UNION ALL "
            "SELECT path FROM __ducklake_metadata_lake.ducklake_delete_file").fetchall()}  # fmt: skip
    return sorted(p.name for p in location.data_path.rglob("*.parquet") if p.name not in known)


def published_files(directory: Path) -> dict[str, Any]:
    """The published folder: Parquet files as rows, the release JSON less what differs by catalog, other bytes."""
    import pyarrow.parquet as pq

    contents: dict[str, Any] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = str(path.relative_to(directory))
        if path.suffix == ".parquet":
            contents[name] = pq.read_table(path).to_pylist()
        elif path.name == "tracebank_release.json":
            release = orjson.loads(path.read_bytes())
            contents[name] = {k: v for k, v in release.items() if k not in RELEASE_FIELDS_THAT_DIFFER}
        elif path.name == "README.md":  # the card shows the same two fields
            lines = path.read_text().splitlines()
            contents[name] = [line for line in lines if not line.startswith(CARD_LINES_THAT_DIFFER)]
        else:
            contents[name] = path.read_bytes()
    return contents


# A release's creation time, and the digest of the data files it read (DuckLake names them with random UUIDs).
RELEASE_FIELDS_THAT_DIFFER = ("created_at", "inputs_digest")
CARD_LINES_THAT_DIFFER = ("| created |", "| inputs digest |")


def leftovers_beside(target: Path) -> list[str]:
    """Staging or replaced folders an export left next to its target."""
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*"))


def first_difference(drilled: dict[str, Any], reference: dict[str, Any]) -> str | None:
    """The first entry (by name) where two states or published folders differ, described; None if equal."""
    for name in sorted(set(drilled) | set(reference)):
        a, b = drilled.get(name), reference.get(name)
        if a != b:
            if isinstance(a, list) and isinstance(b, list):
                only_a = [row for row in a if row not in b][:2]
                only_b = [row for row in b if row not in a][:2]
                return f"{name}: {len(a)} rows vs {len(b)} in the reference; only drilled {only_a}; only reference {only_b}"
            return f"{name} differs from the reference"
    return None


def kill_moment(
    rng: random.Random, stage: str, seconds: float, stub: StubServer, requests: int, by_replies: bool = False
) -> tuple[str, Any]:
    """Where to kill ``stage``: a moment in its reference run time, or (build) after some replies arrived."""
    if stage == "build" and (by_replies or rng.random() < 0.5):
        count, then_s = rng.randrange(requests + 1), rng.uniform(0.0, 0.05)
        return f"after {count} replies + {then_s * 1000:.0f} ms", after_answers(stub, count, then_s)
    at = rng.uniform(0.0, 0.8) * seconds  # the reference time is an estimate: a later run may be quicker
    return f"at {at:.2f} s", after(at)


LATENCY_S = 0.02  # the stub's reply latency: a build's requests overlap, so a kill finds some in flight


@dataclass
class Reference:
    """A pipeline run without a kill: the state after each stage and the published folder."""

    pipeline: Pipeline
    states: dict[str, dict[str, list[tuple]]]
    published: dict[str, Any]
    requests: int


def reference_run(workdir: Path, prompts: int) -> Reference:
    questions, policy = write_inputs(workdir / "inputs", prompts)
    with StubServer(StubOptions(latency_s=LATENCY_S)) as stub:
        pipeline = Pipeline(workdir / "reference", questions, policy, stub.base_url)
        pipeline.run("import")
        states = {}
        for stage in STAGES:
            pipeline.run(stage)
            states[stage] = state(pipeline.location)
        requests = answered_total(stub)
    return Reference(pipeline, states, published_files(pipeline.published), requests)


@dataclass(frozen=True)
class StageDrill:
    seed: int
    stage: str
    moment: str  # when the kill was aimed
    killed: bool  # False: the command finished before the moment came
    problems: list[str]
    orphans: int  # Parquet files the stage left that no snapshot references (uncommitted writes: disk, not data)

    def describe(self) -> str:
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"seed {self.seed} {self.stage} killed {self.moment if self.killed else '(finished first)'}: {verdict}"


def drill(workdir: Path, seed: int, reference: Reference, build_by_replies: bool = False) -> list[StageDrill]:
    """Import, then for each stage: kill it at a seeded moment, run it again, compare with ``reference``.

    ``build_by_replies``: always kill the build after a drawn number of replies (mid-send, for sure).
    """
    rng = random.Random(seed)
    results = []
    with StubServer(StubOptions(latency_s=LATENCY_S)) as stub:
        pipeline = Pipeline(workdir / f"drill-{seed}", reference.pipeline.questions, reference.pipeline.policy,
                            stub.base_url)  # fmt: skip
        pipeline.prepare("import")
        bodies, orphans = request_bodies(pipeline.location, stub.base_url), 0
        for stage in STAGES:
            seconds = reference.pipeline.seconds[stage]
            moment, until = kill_moment(rng, stage, seconds, stub, reference.requests, build_by_replies)
            killed = pipeline.run_killed(stage, until)
            if not killed:  # it ran whole, quicker than the window: draw later kills from its time
                reference.pipeline.seconds[stage] = min(seconds, pipeline.seconds[stage])
            time.sleep(LATENCY_S * 10)  # replies the stub was writing to the dead client are counted by now
            before, cached = answered_bodies(stub), cached_keys(pipeline.location)
            pipeline.run(stage)
            problems = resend_problems(bodies, before, cached, answered_bodies(stub)) if stage == "build" else []
            problems += catalog_problems(pipeline.location)
            if difference := first_difference(state(pipeline.location), reference.states[stage]):
                problems.append(difference)
            if stage == "publish":
                if difference := first_difference(published_files(pipeline.published), reference.published):
                    problems.append(f"published {difference}")
                if leftovers := leftovers_beside(pipeline.published):
                    problems.append(f"left beside the published folder: {leftovers}")
                problems += cli_problems(pipeline, rng)
            orphans, before_stage = len(orphaned_files(pipeline.location)), orphans
            results.append(StageDrill(seed, stage, moment, killed, problems, orphans - before_stage))
    return results


def cli_problems(pipeline: Pipeline, rng: random.Random) -> list[str]:
    """``tracebank sql`` lists the snapshots and reads one drawn from them (time travel, ``--at``)."""
    home = ["--format", "json", "--catalog", pipeline.home]
    listed = subprocess.run(tracebank("sql", "SELECT snapshot_id FROM ducklake_snapshots('lake')", *home),
                            capture_output=True, text=True)  # fmt: skip
    if listed.returncode:
        return [f"tracebank sql cannot list the snapshots: {listed.stderr.strip()[-500:]}"]
    at = rng.choice([row["snapshot_id"] for row in orjson.loads(listed.stdout)][1:])  # 0 holds no tables yet
    read = subprocess.run(tracebank("sql", "--at", at, "SELECT * FROM traces", *home), capture_output=True, text=True)
    return [f"tracebank sql --at {at} fails: {read.stderr.strip()[-500:]}"] if read.returncode else []


def resend_problems(
    bodies: dict[str, int], before: dict[int, int], cached: set[str], after: dict[int, int]
) -> list[str]:
    """A rerun sends each request the cache lacks exactly once and none that the cache holds."""
    if set(after) != set(bodies.values()):
        return [f"the stub answered {len(after)} distinct bodies, the plan makes {len(set(bodies.values()))}"]
    resent = sorted(key for key in cached if after[bodies[key]] != before.get(bodies[key], 0))
    wrong = sorted(key for key in set(bodies) - cached if after[bodies[key]] - before.get(bodies[key], 0) != 1)
    problems = []
    if resent:
        problems.append(f"{len(resent)} requests cached before the kill were sent again, e.g. {resent[0]}")
    if wrong:
        problems.append(f"{len(wrong)} requests missing from the cache were not sent exactly once, e.g. {wrong[0]}")
    return problems
