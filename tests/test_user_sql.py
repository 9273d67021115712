"""SQL from people reads the catalog and nothing else: each escape is refused in one line by every
entry point (the Python API, ``tracebank sql``, ``tracebank shell``) and leaves no file behind."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from rich.console import Console

from tests.conftest import tree_fingerprint, write_jsonl
from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.cli.shell import run_shell
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.user_sql import SqlGuard

# (SQL with {out} for a path beside the catalog and {data} for the catalog's data path, what the refusal says)
ESCAPES = [
    ("COPY (SELECT 1) TO '{out}/x.csv'", "COPY statements are not allowed"),
    ("COPY (SELECT 1) TO '{data}x.csv'", "COPY statements are not allowed"),
    ("COPY traces TO '{data}t.parquet' (FORMAT parquet)", "COPY statements are not allowed"),
    ("ATTACH '{out}/e.duckdb' AS e; CREATE TABLE e.t AS SELECT 1", "ATTACH statements are not allowed"),
    ("ATTACH ':memory:' AS m", "ATTACH statements are not allowed"),
    ("SELECT * FROM read_text('/etc/shadow')", 'Cannot access file "/etc/shadow"'),
    ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
    ("SELECT * FROM read_parquet('{out}/*.parquet')", "Cannot access file"),
    ("SELECT * FROM read_json('{out}/x.json')", "Cannot access file"),
    ("SELECT * FROM glob('/etc/*')", 'Cannot access file "/etc/*"'),
    ("SELECT * FROM glob('{data}../**')", "Cannot access file"),
    ("SELECT * FROM 'https://example.com/a.csv'", 'Cannot access file "https://example.com/a.csv"'),
    ("SELECT * FROM read_csv('s3://bucket/key.csv')", "Cannot access file"),
    ("WITH x AS (SELECT * FROM read_text('/etc/hostname')) SELECT * FROM x", 'Cannot access file "/etc/hostname"'),
    ("SELECT 1; SET enable_external_access = true", "SET statements are not allowed"),
    ("SET lock_configuration = false", "SET statements are not allowed"),
    ("PRAGMA enable_profiling", "PRAGMA statements are not allowed"),
    ("INSTALL httpfs", "statements are not allowed"),
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("EXPORT DATABASE '{out}/exp'", "EXPORT statements are not allowed"),
    ("DETACH lake", "DETACH statements are not allowed"),
    ("CREATE TEMP TABLE t AS SELECT 1", "CREATE statements are not allowed"),
    ("DELETE FROM traces", "DELETE statements are not allowed"),
    ("CHECKPOINT", "statements are not allowed"),
    ("CALL lake.merge_adjacent_files()", "CALL statements are not allowed"),
    ("SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)", "ducklake_cleanup_old_files() changes"),
    ("SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())", "ducklake_expire_snapshots() changes"),
    ("SELECT * FROM lake.merge_adjacent_files()", "merge_adjacent_files() changes"),
    ("SELECT * FROM query('SELECT * FROM ducklake_cleanup_old_files(''lake'')')", "query() runs SQL given as text"),
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))", "runs SQL given as text"),
    ("SELECT getenv('HOME')", "getenv"),
    ("SELECT * FROM duckdb_secrets(redact => false)", "unredacted secrets is disabled"),
    ("SELECT * FROM range(20)", "more than 10 rows"),
]


def expand(sql: str, location: catalog.CatalogLocation) -> str:
    return sql.replace("{out}", str(location.home.parent)).replace("{data}", location.data_url)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> catalog.CatalogLocation:
    """One scored toy catalog (6 prompts, 24 traces) for the whole module: no test here may change it."""
    root = tmp_path_factory.mktemp("guarded")
    rows = [{"id": f"q{i}", "question": q, "answer": f"#### {a}"} for i, (q, a) in enumerate(QUESTIONS.items())]
    location = catalog.locate(root / "catalog")
    import_data(location, ImportConfig(str(write_jsonl(root / "math.jsonl", rows)), "toy",
                                       ColumnMap.parse("prompt=question,reference=answer,id=id")))  # fmt: skip
    build(location, BuildConfig("toy", samples=4), FakeTeacher())
    score(location, ScoreConfig("toy"))
    return location


def test_every_escape_is_refused_by_the_python_api_in_one_line_and_writes_nothing(guarded):
    before = tree_fingerprint(guarded.home.parent)
    with catalog.Catalog(guarded, guard=SqlGuard(max_result_rows=10)) as cat:
        for sql, fragment in ESCAPES:
            with pytest.raises(TracebankError) as refused:
                cat.sql(expand(sql, guarded))
            message = str(refused.value)
            assert fragment in message and "\n" not in message, (sql, message)
        assert cat.sql("SELECT count(*) AS n FROM traces")["n"][0] == 24  # still answers after every refusal
    assert tree_fingerprint(guarded.home.parent) == before


def test_reads_of_the_catalog_still_work_time_travel_included(guarded):
    with catalog.Catalog(guarded) as cat:
        first = cat.scalar("SELECT min(snapshot_id) FROM lake.snapshots() WHERE commit_message LIKE 'build%'")
    with catalog.Catalog(guarded, guard=SqlGuard()) as cat:
        assert cat.sql("SELECT count(*) AS n FROM traces AT (VERSION => 1)")["n"][0] == 0
        assert cat.sql(f"SELECT count(*) AS n FROM traces AT (VERSION => {first})")["n"][0] == 24
        assert cat.sql("SELECT count(*) AS n FROM scores s JOIN traces t USING (trace_id)")["n"][0] > 0
        assert set(cat.sql("SHOW TABLES")["name"]) >= {"traces", "scores", "curated"}
        assert "rationale" in set(cat.sql("DESCRIBE traces")["column_name"])
        assert cat.sql("SELECT count(*) AS n FROM lake.snapshots()")["n"][0] >= 3
        assert cat.sql("EXPLAIN SELECT * FROM traces").height >= 1
        files = cat.sql("SELECT data_file FROM ducklake_list_files('lake', 'traces')")["data_file"].to_list()
        assert files and cat.sql(f"SELECT count(*) AS n FROM read_parquet('{files[0]}')")["n"][0] > 0
    with catalog.Catalog(guarded, snapshot=first, guard=SqlGuard()) as cat:
        assert cat.sql("SELECT count(*) AS n FROM traces")["n"][0] == 24


def test_a_runaway_query_is_stopped_at_the_timeout(guarded):
    with catalog.Catalog(guarded, guard=SqlGuard(timeout_s=0.5)) as cat, pytest.raises(TracebankError) as stopped:
        cat.sql("SELECT count(*) FROM range(100000000000) a, range(10) b")
    assert "ran past 0.5 s" in str(stopped.value)


def test_a_guarded_connection_is_never_lent_again(guarded):
    with catalog.Catalog(guarded, guard=SqlGuard()) as cat:
        cat.sql("SELECT 1")
    with catalog.Catalog(guarded) as cat:  # an unguarded reader may read a file the user names
        assert cat.scalar("SELECT current_setting('enable_external_access')") is True
        assert cat.scalar("SELECT current_setting('lock_configuration')") is False


def test_the_shell_refuses_each_escape_and_keeps_going(guarded):
    before = tree_fingerprint(guarded.home.parent)
    lines = [expand(sql, guarded) + ";" for sql, _ in ESCAPES] + ["SELECT 'still here' AS status;"]
    console = Console(record=True, width=400)
    run_shell(guarded, lines=lines, out=console, guard=SqlGuard(max_result_rows=10))
    text = console.export_text()
    for sql, fragment in ESCAPES:
        assert fragment in text, sql
    assert text.count("error:") == len(ESCAPES) and "still here" in text
    assert tree_fingerprint(guarded.home.parent) == before


def tracebank(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracebank", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_the_commands_refuse_in_one_line_and_change_nothing(guarded):
    home, escapes = str(guarded.home), [ESCAPES[0], ESCAPES[3], ESCAPES[5]]  # the three first reported
    before = tree_fingerprint(guarded.home.parent)
    for sql, fragment in escapes:
        done = tracebank("sql", expand(sql, guarded), "--catalog", home)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: refused: "), done.stderr
        assert fragment in lines[0]
    shell = tracebank("shell", "--catalog", home, "--max-result-rows", "4",
                      stdin="".join(expand(s, guarded) + ";\n" for s, _ in escapes) + "SELECT * FROM range(5);\n")  # fmt: skip
    assert shell.returncode == 0 and shell.stdout.count("error: refused:") == 4, shell.stdout
    assert "more than 4 rows" in shell.stdout
    assert tree_fingerprint(guarded.home.parent) == before
    ok = tracebank("sql", "SELECT count(*) AS n FROM traces", "-f", "json", "--timeout", "30", "--catalog", home)
    assert ok.returncode == 0 and orjson.loads(ok.stdout) == [{"n": 24}]
