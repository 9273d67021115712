"""DuckLake on a real PostgreSQL server: catalog homes that share it, two writers, readers during writes, errors."""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from tests.cli.test_cli import assert_one_line_error, cli
from tests.conftest import write_jsonl
from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog, catalog_postgres
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data

pytestmark = pytest.mark.drill  # real processes, servers and faults: make test runs it, make test-fast does not

pytest_plugins = ["tests.pg_server"]  # the postgres_server and postgres_dsn fixtures

MAP = "prompt=question,reference=answer,response=response,id=id"


def rows(start: int, stop: int) -> list[dict]:
    return [
        {"id": f"r{i}", "question": f"What is {i} + {i}?", "answer": f"#### {2 * i}", "response": f"so\n#### {2 * i}"}
        for i in range(start, stop)
    ]


def init(home, dsn, *extra, check=True):
    return cli("init", "--backend", "postgres", "--metadata", dsn, *extra, catalog=home, check=check)


def counts(location) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) of prompts and traces: equal numbers mean nothing was stored twice."""
    with catalog.Catalog(location) as cat:
        return {
            "prompts": cat.con.execute("SELECT count(*), count(DISTINCT prompt_id) FROM prompts").fetchone(),
            "traces": cat.con.execute("SELECT count(*), count(DISTINCT trace_id) FROM traces").fetchone(),
        }


def test_two_homes_share_one_catalog_and_its_data(postgres_dsn, tmp_path):
    data = tmp_path / "lake"
    done = init(tmp_path / "a", postgres_dsn, "--data-path", str(data))
    assert done.stdout.startswith("created postgres catalog")
    joined = init(tmp_path / "b", f"postgres:{postgres_dsn}")  # another machine: the data path comes from the catalog
    assert joined.stdout.startswith("found existing postgres catalog")
    for home in ("a", "b"):
        config = orjson.loads((tmp_path / home / catalog_postgres.CONFIG_FILE).read_bytes())
        assert config == {"backend": "postgres", "metadata": postgres_dsn, "data_path": f"{data}/"}
    cli("import", str(write_jsonl(tmp_path / "r.jsonl", rows(0, 5))), "-d", "toy", "--map", MAP, catalog=tmp_path / "a")
    out = cli("sql", "SELECT count(*) AS n FROM traces", "--format", "json", catalog=tmp_path / "b").stdout
    assert orjson.loads(out) == [{"n": 5}]
    assert len(list(data.rglob("*.parquet"))) >= 3  # prompts, traces, runs: data in Parquet, not in PostgreSQL
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [catalog_postgres.CONFIG_FILE]
    with pytest.raises(TracebankError, match="already points at the PostgreSQL catalog"):
        catalog.init(catalog.locate(tmp_path / "b"), "postgres", postgres_dsn, str(tmp_path / "elsewhere"))
    fragments = (f"already keeps its data at {data}/", "--data-path")
    _fails_in_one_line(tmp_path / "c", *fragments, backend="postgres", metadata=postgres_dsn, data_path="/elsewhere")
    fields = dict(pair.split("=") for pair in postgres_dsn.split())
    uri = f"postgresql://{fields['user']}@{fields['host']}:{fields['port']}/{fields['dbname']}"
    by_uri = catalog.locate(tmp_path / "uri")  # a libpq URI works as well, for readers and the writers' lock
    assert not catalog.init(by_uri, "postgres", uri)
    import_data(by_uri, ImportConfig(str(write_jsonl(tmp_path / "s.jsonl", rows(5, 7))), "toy", ColumnMap.parse(MAP)))
    assert counts(catalog.locate(tmp_path / "a")) == {"prompts": (7, 7), "traces": (7, 7)}


def test_stages_run_and_the_password_lands_in_no_file(postgres_dsn, postgres_server, tmp_path):
    """A password given through PGPASSWORD is used (the server demands one) and written nowhere."""
    location = catalog.locate(tmp_path / "home")
    assert catalog.init(location, "postgres", postgres_dsn, str(tmp_path / "lake"))
    questions = [{"id": f"q{i}", "question": q, "answer": f"#### {a}"} for i, (q, a) in enumerate(QUESTIONS.items())]
    math = write_jsonl(tmp_path / "m.jsonl", questions)
    import_data(location, ImportConfig(str(math), "toy", ColumnMap.parse("prompt=question,reference=answer,id=id")))
    build(location, BuildConfig("toy", samples=4), FakeTeacher())  # streams Parquet into the local data path
    score(location, ScoreConfig("toy"))
    with catalog.Catalog(location) as cat:
        traces = cat.scalar("SELECT count(*) FROM traces")
        passed = cat.scalar("SELECT count(DISTINCT trace_id) FROM scores WHERE filter = 'correctness' AND passed")
    assert traces == 4 * len(QUESTIONS) and passed == traces // 2  # samples 0 and 2 are right
    assert (location.home / "requests.sqlite").exists()
    password = postgres_server.password.encode()
    files = [p for root in (location.home, tmp_path / "lake") for p in root.rglob("*") if p.is_file()]
    assert files and not [p for p in files if password in p.read_bytes()]


HOLD_WRITER = """
    import pathlib, time
    from tracebank import catalog
    with catalog.writing(catalog.locate({home!r}), "slow writer") as writer:
        writer.execute("DELETE FROM traces")
        print("holding", flush=True)
        release = pathlib.Path({release!r})
        deadline = time.monotonic() + 300
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
"""


def _spawn(code: str, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
    )


def _import(home, path, **env: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tracebank",
        "import",
        str(path),
        "-d",
        "toy",
        "--map",
        MAP,
        "--catalog",
        str(home),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
    )


def test_two_writers_on_overlapping_rows_both_commit_each_row_once(postgres_dsn, tmp_path):
    location = catalog.locate(tmp_path / "home")
    catalog.init(location, "postgres", postgres_dsn, str(tmp_path / "lake"))
    catalog.init(catalog.locate(tmp_path / "other"), "postgres", postgres_dsn)  # as on another machine: no shared file
    first = write_jsonl(tmp_path / "first.jsonl", rows(0, 300))
    second = write_jsonl(tmp_path / "second.jsonl", rows(200, 500))  # 100 rows in both files
    writers = [_import(location.home, first), _import(tmp_path / "other", second)]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    assert counts(location) == {"prompts": (500, 500), "traces": (500, 500)}
    with catalog.Catalog(location) as cat:
        messages = cat.con.execute(
            "SELECT commit_message FROM ducklake_snapshots('lake') WHERE commit_message LIKE 'import%'"
        )
        assert len(messages.fetchall()) == 2  # each writer its own snapshot


def test_reader_during_a_write_and_a_second_writer_waits_or_fails_clearly(postgres_dsn, postgres_server, tmp_path):
    location = catalog.locate(tmp_path / "home")
    catalog.init(location, "postgres", postgres_dsn, str(tmp_path / "lake"))
    import_data(location, ImportConfig(str(write_jsonl(tmp_path / "a.jsonl", rows(0, 4))), "toy", ColumnMap.parse(MAP)))
    release = tmp_path / "release"
    holder = _spawn(HOLD_WRITER.format(home=str(location.home), release=str(release)))
    assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
    reader = cli("sql", "SELECT count(*) AS n FROM traces", "--format", "json", catalog=location.home)
    assert orjson.loads(reader.stdout) == [{"n": 4}]  # the uncommitted delete is invisible, and nobody waited
    impatient = _import(location.home, write_jsonl(tmp_path / "b.jsonl", rows(4, 6)), TRACEBANK_LOCK_TIMEOUT="0.5")
    _, err = impatient.communicate(timeout=120)
    assert_one_line_error(
        subprocess.CompletedProcess([], impatient.returncode, "", err),
        f"writer pid {holder.pid} on",
        "holds the write lock",
    )
    patient = _import(location.home, write_jsonl(tmp_path / "c.jsonl", rows(10, 13)))
    waiting = (
        f"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'tracebank writer pid {patient.pid} %'"
    )
    deadline = time.monotonic() + 120
    while postgres_server.psql(waiting).strip() != "1" and patient.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # until the patient writer is waiting for the lock
    assert patient.poll() is None, patient.communicate()
    release.touch()
    _, err = patient.communicate(timeout=120)
    assert patient.returncode == 0, err
    assert holder.wait(timeout=60) == 0
    assert counts(location) == {"prompts": (7, 7), "traces": (3, 3)}  # the holder's delete, then the patient's rows


def test_a_killed_writer_releases_the_lock_and_leaves_the_catalog_whole(postgres_dsn, tmp_path):
    location = catalog.locate(tmp_path / "home")
    catalog.init(location, "postgres", postgres_dsn, str(tmp_path / "lake"))
    import_data(location, ImportConfig(str(write_jsonl(tmp_path / "a.jsonl", rows(0, 4))), "toy", ColumnMap.parse(MAP)))
    holder = _spawn(HOLD_WRITER.format(home=str(location.home), release=str(tmp_path / "never")))
    assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert counts(location)["traces"] == (4, 4)
    late = _import(location.home, write_jsonl(tmp_path / "b.jsonl", rows(4, 6)), TRACEBANK_LOCK_TIMEOUT="20")
    _, err = late.communicate(timeout=120)
    assert late.returncode == 0, err
    assert counts(location)["traces"] == (6, 6)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fails_in_one_line(home, *fragments: str, **init_args) -> str:
    """catalog.init fails with one line naming every fragment, and leaves no catalog home behind."""
    with pytest.raises(TracebankError) as failure:
        catalog.init(catalog.locate(home), **init_args)
    message = str(failure.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message
    assert not home.exists()
    return message


@pytest.mark.parametrize(
    ("metadata", "fragments"),
    [
        (lambda dsn: dsn.replace("dbname=", "dbname=missing_"), ["does not exist", "createdb", "dbname="]),
        (lambda dsn: f"dbname=x host=127.0.0.1 port={_closed_port()} user=u", ["cannot reach PostgreSQL", "port="]),
        (lambda dsn: dsn + " password=hunter2", ["holds a password", "PGPASSWORD"]),
        (lambda dsn: "dbname=x host", ["cannot read the connection string", "key=value"]),
        (lambda dsn: "", ["needs a libpq connection string"]),
    ],
)
def test_bad_servers_and_connection_strings_fail_in_one_line(postgres_dsn, tmp_path, metadata, fragments):
    message = _fails_in_one_line(tmp_path / "home", *fragments, backend="postgres", metadata=metadata(postgres_dsn))
    assert "hunter2" not in message


def test_a_missing_password_fails_in_one_line(postgres_dsn, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    fragments = ("PostgreSQL refused the login", "PGPASSWORD", "~/.pgpass")
    _fails_in_one_line(tmp_path / "home", *fragments, backend="postgres", metadata=postgres_dsn)


def test_a_missing_postgres_extension_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb_extension_postgres_scanner", None)  # as if never installed
    fragment = f"pip install duckdb-extension-postgres-scanner=={duckdb.__version__}"
    _fails_in_one_line(tmp_path / "home", fragment, backend="postgres", metadata="dbname=x")


@pytest.mark.parametrize(
    ("init_args", "fragment"),
    [
        ({"backend": "duckdb", "metadata": "dbname=x"}, "are for --backend postgres"),
        ({"backend": "sqlite", "data_path": "/tmp/x"}, "are for --backend postgres"),
        ({"backend": "postgres"}, "--backend postgres needs --metadata"),
        ({"backend": "postgres", "metadata": "dbname=x", "data_path": "ftp://h/x"}, "bucket URL (s3://"),
        ({"backend": "postgres", "metadata": "dbname=x", "data_path": "s3://"}, "bucket URL (s3://"),
    ],
)
def test_init_options_are_checked_before_anything_is_written(tmp_path, init_args, fragment):
    _fails_in_one_line(tmp_path / "home", fragment, **init_args)


@pytest.mark.parametrize(
    "dsn",
    [
        "dbname=x PASSWORD=secret",
        "dbname=x sslpassword = 'a b'",
        "postgresql://me:secret@db.example.org/x",
        "postgresql://me@db.example.org/x?password=secret",
    ],
)
def test_connection_strings_with_passwords_are_refused(dsn):
    with pytest.raises(TracebankError, match="holds a password"):
        catalog_postgres.check_dsn(dsn)


def test_connection_strings_and_data_paths_are_normalised(tmp_path, monkeypatch):
    assert catalog_postgres.check_dsn("postgres: dbname=x host=h application_name='a b' ") == (
        "dbname=x host=h application_name='a b'"
    )
    assert catalog_postgres.check_dsn("postgresql://me@h:5433/x") == "postgresql://me@h:5433/x"
    assert catalog_postgres.check_dsn("postgres://me@h/x?sslmode=require") == "postgres://me@h/x?sslmode=require"
    monkeypatch.chdir(tmp_path)
    assert catalog_postgres.check_data_path("lake") == f"{tmp_path}/lake/"
    assert catalog_postgres.check_data_path("s3://bucket/some/prefix") == "s3://bucket/some/prefix/"


def test_object_store_credentials_come_from_the_environment_only():
    assert catalog_postgres.object_store_secret({}) == ""
    secret = catalog_postgres.object_store_secret(
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "it's", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    )
    assert secret == "TYPE s3, KEY_ID 'AK', SECRET 'it''s', ENDPOINT '127.0.0.1:9000', USE_SSL false, URL_STYLE 'path'"


def test_a_bucket_data_path_is_recorded_and_steps_that_write_files_say_they_need_a_local_one(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    catalog_postgres.PostgresCatalog("dbname=x", "s3://bucket/lake").save(home)
    location = catalog.locate(home)
    assert location.backend == "postgres" and location.data_url == "s3://bucket/lake/"
    with pytest.raises(TracebankError, match="needs a catalog whose data path is a local directory"):
        _ = location.data_path


# A python with moto[server], a real S3-compatible HTTP server (in-memory). Its pins clash with the project's
# lock, so it lives in its own virtualenv, like the vLLM server of tests/integration.
S3_SERVER_PYTHON = os.environ.get("TRACEBANK_S3_SERVER_PYTHON")


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty bucket on a loopback S3 server; the AWS variables name it and its (made-up) credentials."""
    if not S3_SERVER_PYTHON or not Path(S3_SERVER_PYTHON).exists():
        pytest.skip("no S3 server: point TRACEBANK_S3_SERVER_PYTHON at a python with moto[server] installed")
    pytest.importorskip("duckdb_extension_httpfs", reason="pip install duckdb-extension-httpfs (bucket data paths)")
    port = _closed_port()
    command = [S3_SERVER_PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/lake-bucket", method="PUT"), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        for name, value in {"AWS_ACCESS_KEY_ID": "tracebank", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(12),
                            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        yield "s3://lake-bucket/team/lake"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _bucket_keys(bucket_url: str) -> list[str]:
    bucket, prefix = bucket_url.removeprefix("s3://").split("/", 1)
    listing = urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL']}/{bucket}?list-type=2&prefix={prefix}").read()
    return re.findall(r"<Key>([^<]+)</Key>", listing.decode())


def test_data_on_a_bucket_with_the_catalog_on_postgres(s3_bucket, postgres_dsn, tmp_path):
    init(tmp_path / "a", postgres_dsn, "--data-path", s3_bucket)
    init(tmp_path / "b", postgres_dsn)  # joins: the bucket comes from the catalog
    cli("import", str(write_jsonl(tmp_path / "r.jsonl", rows(0, 5))), "-d", "toy", "--map", MAP, catalog=tmp_path / "a")
    location = catalog.locate(tmp_path / "b")
    score(location, ScoreConfig("toy"))
    out = cli("sql", "SELECT count(DISTINCT trace_id) AS n FROM scores", "--format", "json", catalog=tmp_path / "a")
    assert orjson.loads(out.stdout) == [{"n": 5}] and counts(location) == {"prompts": (5, 5), "traces": (5, 5)}
    beside = s3_bucket.rsplit("/", 1)[0] + "/elsewhere.csv"  # same bucket, outside the catalog's prefix
    refused = cli("sql", f"SELECT * FROM read_csv('{beside}')", catalog=tmp_path / "a", check=False)
    assert refused.returncode == 1 and "refused: " in refused.stderr and beside in refused.stderr
    # A build stages its traces in the home and copies them to the bucket in its commit.
    questions = [{"id": f"q{i}", "question": q, "answer": f"#### {a}"} for i, (q, a) in enumerate(QUESTIONS.items())]
    cli("import", str(write_jsonl(tmp_path / "q.jsonl", questions)), "-d", "qs", "--map", "prompt=question,reference=answer",
        catalog=tmp_path / "a")  # fmt: skip
    built = build(location, BuildConfig("qs", samples=1), FakeTeacher())
    n = len(QUESTIONS)
    assert (built.sent, built.traces_new) == (n, n) and counts(location)["traces"] == (5 + n, 5 + n)
    assert build(location, BuildConfig("qs", samples=1), FakeTeacher()).traces_new == 0  # stored once
    keys = _bucket_keys(s3_bucket)
    assert {key.split("/")[3] for key in keys} >= {"prompts", "traces", "scores", "runs"}, keys
    assert all(key.endswith(".parquet") for key in keys)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".parquet"]  # no data on local disk, no staged file left
    secret = os.environ["AWS_SECRET_ACCESS_KEY"].encode()
    assert not [p for p in files if secret in p.read_bytes()]
