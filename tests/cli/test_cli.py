"""The command line, run as a real process: exit codes, one-line errors, nothing changed on failure."""

import subprocess
import sys

import orjson
import pytest

from tests.conftest import tree_fingerprint, write_jsonl

ROWS = [{"id": f"r{i}", "question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(1, 5)]
POLICY = """
name: keep-correct
rules:
  - {name: wrong, when: "correctness.passed = false", action: drop, reason: correctness.reason}
splits: {train: 0.5, test: 0.5}
"""


def cli(*args, catalog=None, check=True):
    command = [sys.executable, "-m", "tracebank", *args] + (["--catalog", str(catalog)] if catalog else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def assert_one_line_error(done, *fragments):
    assert done.returncode == 1, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def make_released(tmp_path):
    """A catalog with imported prompts + traces, scored and released as d@v1 (no model needed)."""
    catalog = tmp_path / "cat"
    rows = [
        {
            **row,
            "solution": f"{row['question']} It is {int(row['answer'][5:]) + (i % 2)}.\n#### {int(row['answer'][5:]) + (i % 2)}",
        }
        for i, row in enumerate(ROWS)
    ]
    write_jsonl(tmp_path / "traces.jsonl", rows)
    cli(
        "import",
        str(tmp_path / "traces.jsonl"),
        "--dataset",
        "d",
        "--map",
        "prompt=question,reference=answer,response=solution,id=id",
        catalog=catalog,
    )
    cli("score", "d", catalog=catalog)
    (tmp_path / "policy.yaml").write_text(POLICY)
    cli("curate", "d", "--policy", str(tmp_path / "policy.yaml"), "-m", "first", catalog=catalog)
    return catalog


@pytest.fixture
def released(tmp_path):
    return make_released(tmp_path)


@pytest.fixture(scope="module")
def released_once(tmp_path_factory):
    """One released catalog for the tests that each prove their command changed nothing in it."""
    return make_released(tmp_path_factory.mktemp("released"))


def test_pipeline_commands_and_sql_from_another_process(released):
    versions = cli("versions", "d", catalog=released).stdout
    assert "keep-correct" in versions and "first" in versions
    rows = orjson.loads(
        cli(
            "sql",
            "SELECT split, rule, keep, count(*) AS n FROM decisions GROUP BY ALL ORDER BY ALL",
            "--format",
            "json",
            catalog=released,
        ).stdout
    )
    assert sum(r["n"] for r in rows) == 4 and {r["rule"] for r in rows if not r["keep"]} == {"wrong"}
    csv_out = cli(
        "sql", "SELECT source_id, answer FROM traces ORDER BY source_id", "--format", "csv", catalog=released
    ).stdout
    assert csv_out.splitlines() == ["source_id,answer", "r1,2", "r2,5", "r3,6", "r4,9"]
    nested = cli("sql", "SELECT messages FROM prompts LIMIT 1", "--format", "csv", catalog=released).stdout
    assert orjson.loads(nested.splitlines()[1].strip('"').replace('""', '"'))[0]["role"] == "user"
    assert "wrote" in cli("card", "d@v1", catalog=released).stdout
    assert "curated" in cli("sql", "SELECT 'curated' AS v, count(*) FROM curated", catalog=released).stdout


def test_time_travel_with_at_and_release(released, tmp_path):
    snapshots = orjson.loads(
        cli("sql", "SELECT snapshot_id FROM lake.snapshots() ORDER BY 1", "-f", "json", catalog=released).stdout
    )
    first_import = snapshots[2]["snapshot_id"]  # 0: schema, 1: tables, 2: the import
    before_scores = orjson.loads(
        cli("sql", "SELECT count(*) AS n FROM scores", "--at", str(first_import), "-f", "json", catalog=released).stdout
    )
    assert before_scores == [{"n": 0}]
    at_release = orjson.loads(
        cli("sql", "SELECT count(*) AS n FROM releases", "--release", "d@v1", "-f", "json", catalog=released).stdout
    )
    assert at_release == [{"n": 1}]
    assert orjson.loads(cli("sql", "SELECT 7 AS n", "--at", "0", "-f", "json", catalog=released).stdout) == [{"n": 7}]
    inline = orjson.loads(
        cli(
            "sql", f"SELECT count(*) AS n FROM scores AT (VERSION => {first_import})", "-f", "json", catalog=released
        ).stdout
    )
    assert inline == [{"n": 0}]


def test_same_curate_again_says_so(released, tmp_path):
    again = cli("curate", "d", "--policy", str(tmp_path / "policy.yaml"), "-m", "again", catalog=released)
    assert "no new release" in again.stdout and "d@v1" in again.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["import", "{tmp}/absent.jsonl", "-d", "d", "--map", "prompt=question"], ["no such file", "absent.jsonl"]),
        (
            ["import", "{tmp}/traces.jsonl", "-d", "d", "--map", "prompt=query"],
            ["unknown column 'query'", "columns: id, question"],
        ),
        (["import", "{tmp}/broken.jsonl", "-d", "d", "--map", "prompt=question"], ["broken.jsonl:3: malformed JSON"]),
        (["versions", "nope"], ["unknown dataset 'nope'", "datasets in", ": d"]),
        (["card", "d@v9"], ["no version v9", "versions: v1"]),
        (["card", "nope@v1"], ["unknown dataset 'nope'"]),
        (["build", "nope"], ["unknown dataset 'nope'"]),
        (["score", "d", "--filter", "vibes"], ["unknown filter 'vibes'"]),
        (["score", "d", "--filter", "near_dup", "--option", "threshold=0.8"], ["expected FILTER.KEY=VALUE"]),
        (["score", "d", "--filter", "near_dup", "--option", "near_dup.treshold=0.8"], ["unknown key 'treshold'"]),
        (["score", "d", "--filter", "near_dup", "--option", "near_dup.threshold=2"], ["threshold must be in (0, 1]"]),
        (["curate", "d", "--policy", "{tmp}/absent.yaml", "-m", "x"], ["no such policy file"]),
        (["sql", "SELECT * FROM no_such_table"], ["query failed", "no_such_table"]),
        (["sql", "SELECT 1", "--format", "xml"], ["--format 'xml'"]),
        (["sql", "SELECT 1", "--at", "999"], ["snapshot 999"]),
        (["sql", "SELECT 1", "--at", "-3"], ["snapshot must be 0 or more"]),
        (["sql", "DELETE FROM traces"], ["read-only"]),
        (["train", "sft", "--release", "d@v4"], ["no version v4"]),
        (["train", "sft", "--release", "d@v1", "--chunk-kinds", "reasoning"], ["no chunks for the kept traces"]),
        (["build", "d", "--config", "{tmp}/bad-build.yaml"], ["unknown key 'colour'"]),
        (["run", "{tmp}/absent-recipe.yaml"], ["no such recipe"]),
        (["pairs", "d@v1"], ["has no pairs", "--policy student"]),
        (["train", "orpo", "--release", "d@v1"], ["has no pairs", "tracebank pairs d@v1"]),
        (["train", "sft", "--release", "d@v1", "--precision", "half"], ["precision must be one of auto, fp32, bf16"]),
        (["train", "dpo", "--release", "d@v1", "--precision", "int8"], ["precision must be one of auto, fp32, bf16"]),
        (["eval", "--student", "m", "--release", "d@v1", "--precision", "fp64"], ["precision must be one of"]),
        (["build", "d", "--precision", "half"], ["transformers precision must be one of"]),
        (["eval", "--student", "m"], ["either --release"]),
        (["eval", "--student", "m", "--release", "d@v1", "--split", "dev"], ["no prompts in split 'dev'"]),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_and_changes_nothing(released_once, args, fragments):
    released, tmp_path = released_once, released_once.parent
    (tmp_path / "broken.jsonl").write_text('{"question": "a"}\n{"question": "b"}\n{"question": \n')
    (tmp_path / "bad-build.yaml").write_text("colour: blue\n")
    before = tree_fingerprint(released)
    done = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], catalog=released, check=False)
    assert_one_line_error(done, *fragments)
    assert tree_fingerprint(released) == before


def test_unwritable_catalog_path(tmp_path):
    (tmp_path / "file").write_text("x")
    write_jsonl(tmp_path / "p.jsonl", ROWS)
    done = cli(
        "import",
        str(tmp_path / "p.jsonl"),
        "-d",
        "d",
        "--map",
        "prompt=question",
        catalog=tmp_path / "file" / "cat",
        check=False,
    )
    assert_one_line_error(done, "cannot write the catalog", "--catalog or TRACEBANK_CATALOG")


def test_reading_a_missing_catalog(tmp_path):
    assert_one_line_error(cli("sql", "SELECT 1", catalog=tmp_path / "none", check=False), "no catalog at")
    assert not (tmp_path / "none").exists()


def test_catalog_from_environment(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", ROWS)
    env_catalog = tmp_path / "from-env"
    done = subprocess.run(
        [sys.executable, "-m", "tracebank", "import", str(tmp_path / "p.jsonl"), "-d", "e", "--map", "prompt=question"],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "TRACEBANK_CATALOG": str(env_catalog)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (env_catalog / "catalog.ducklake").exists()


def test_shell_is_read_only_and_keeps_going_after_errors(released):
    script = "SELECT count(*) AS traces\nFROM traces;\n.tables\nDELETE FROM traces;\n.schema releases\nSELECT 'still here' AS status;\n.quit\nSELECT 'never';\n"
    done = subprocess.run(
        [sys.executable, "-m", "tracebank", "shell", "--catalog", str(released)], input=script, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "│ 4      │" in done.stdout  # four traces
    assert "curated" in done.stdout and "pairs" in done.stdout  # .tables lists views and tables
    assert "read-only" in done.stdout and "still here" in done.stdout and "never" not in done.stdout
    assert "decisions_digest" in done.stdout  # .schema
    rows = orjson.loads(cli("sql", "SELECT count(*) AS n FROM traces", "-f", "json", catalog=released).stdout)
    assert rows == [{"n": 4}]


def test_diff_and_publish_commands(released, tmp_path):
    (tmp_path / "keep-all.yaml").write_text("name: keep-all\nrules: []\nsplits: {train: 0.5, test: 0.5}\n")
    cli("curate", "d", "--policy", str(tmp_path / "keep-all.yaml"), "-m", "everything", catalog=released)
    shown = cli("diff", "d@v1", "d@v2", catalog=released).stdout
    assert "d@v1" in shown and "d@v2" in shown and "2 rows added, 0 removed" in shown
    published = cli("publish", "d@v2", "--to", str(tmp_path / "export"), "--license", "mit", catalog=released).stdout
    assert "published d@v2" in published and (tmp_path / "export" / "README.md").is_file()
    assert_one_line_error(
        cli("publish", "d@v2", "--to", "hf://only-one-part", catalog=released, check=False), "expected hf://ORG/NAME"
    )
