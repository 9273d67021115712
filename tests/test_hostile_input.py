"""Hostile input: huge lines, blank references, SQL in names, paths out of bounds, links, borrowed ids.

Each case: one clear error line, exit status 1 from the command, and nothing written (the catalog's
files, and any directory the command was pointed at, are byte for byte what they were).
(Teachers that misbehave are in tests/builders/test_hostile_teacher.py.)
"""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import tree_fingerprint, write_jsonl
from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog, hashing, records
from tracebank.builders.runner import BuildConfig, build
from tracebank.cli.main import main
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.data_cards.publish import MARKER, publish
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data

HOSTILE = "x'; DROP TABLE traces; --"
MIB = 2**20


def _import(location, path, dataset="d", spec="prompt=question,reference=answer", **kwargs):
    return import_data(location, ImportConfig(str(path), dataset, ColumnMap.parse(spec), **kwargs))


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """The ``tracebank`` entry point in this process: (exit status, stderr)."""
    capsys.readouterr()
    argv, sys.argv = sys.argv, ["tracebank", *args]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


def _write_long_line(path: Path, size: int, opener=open) -> Path:
    """A good first row, then one whose prompt is ``size`` bytes, written a MiB at a time."""
    with opener(path, "wb") as out:
        out.write(b'{"question": "What is 1 + 1?", "answer": "#### 2"}\n{"question": "')
        block = b"a" * min(size, MIB)
        for start in range(0, size, MIB):
            out.write(block[: min(MIB, size - start)])
        out.write(b'", "answer": "#### 2"}\n')
    return path


@pytest.fixture(scope="module")
def line_100mb(tmp_path_factory) -> Path:
    return _write_long_line(tmp_path_factory.mktemp("huge") / "huge.jsonl", 100 * MIB)


# -- a 100 MB line -----------------------------------------------------------------------------


def test_a_100_mb_line_is_refused_naming_its_line_and_changes_nothing(location, tmp_path, line_100mb):
    _import(location, write_jsonl(tmp_path / "good.jsonl", [{"question": "What is 3 + 3?", "answer": "#### 6"}]))
    before = tree_fingerprint(location.home)
    with pytest.raises(TracebankError, match=r"huge\.jsonl:2: the line is longer than 64 MiB; .*--max-line-mb"):
        _import(location, line_100mb)
    assert tree_fingerprint(location.home) == before


def _peak_rss_mb(*args: str) -> tuple[int, float]:
    process = subprocess.Popen([sys.executable, "-m", "tracebank", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def test_reading_a_100_mb_line_holds_about_the_limit_in_memory(tmp_path, line_100mb):
    """Peak memory of the refused import minus that of one refused at its first line: the limit, not 100 MB."""
    (tmp_path / "bad.jsonl").write_bytes(b"{not json\n")
    common = ["-d", "d", "--map", "prompt=question", "--catalog", str(tmp_path / "cat")]
    small_code, small_peak = _peak_rss_mb("import", str(tmp_path / "bad.jsonl"), *common)
    huge_code, huge_peak = _peak_rss_mb("import", str(line_100mb), *common, "--max-line-mb", "4")
    assert (small_code, huge_code) == (1, 1)
    assert huge_peak - small_peak < 40, (small_peak, huge_peak)  # a whole read would add >= 100 MB


def test_the_limit_is_exact_and_can_be_raised(location, tmp_path):
    limit = 1000
    at = _write_long_line(tmp_path / "at.jsonl", limit - len(b'{"question": "", "answer": "#### 2"}'))
    over = _write_long_line(tmp_path / "over.jsonl", limit - len(b'{"question": "", "answer": "#### 2"}') + 1)
    assert _import(location, at, max_line_mb=limit / MIB).rows == 2  # exactly the limit: read
    with pytest.raises(TracebankError, match=r"over\.jsonl:2: the line is longer"):
        _import(location, over, max_line_mb=limit / MIB)
    assert _import(location, over, dataset="e", max_line_mb=2 * limit / MIB).rows == 2


def test_gzip_and_json_files_are_bounded_too(location, tmp_path):
    bomb = _write_long_line(tmp_path / "bomb.jsonl.gz", 8 * MIB, opener=gzip.open)  # 8 MiB from a few KiB
    assert bomb.stat().st_size < MIB
    with pytest.raises(TracebankError, match=r"bomb\.jsonl\.gz:2: the line is longer than 1 MiB"):
        _import(location, bomb, max_line_mb=1)
    whole = tmp_path / "rows.json"
    whole.write_bytes(orjson.dumps([{"question": "q" * (2 * MIB)}]))
    with pytest.raises(TracebankError, match=r"rows\.json \(a \.json file, read whole.*longer than 1 MiB"):
        _import(location, whole, spec="prompt=question", max_line_mb=1)
    assert not location.home.exists()


@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_max_line_mb_must_be_positive(value):
    with pytest.raises(TracebankError, match="max_line_mb must be positive"):
        ImportConfig("x.jsonl", "d", ColumnMap.parse("prompt=q"), max_line_mb=value)


@pytest.mark.parametrize("opener", [open, gzip.open])
def test_invalid_utf8_is_refused_with_its_line(location, tmp_path, opener):
    path = tmp_path / ("latin1.jsonl" + (".gz" if opener is gzip.open else ""))
    with opener(path, "wb") as out:
        out.write(b'{"question": "What is 1 + 1?"}\n{"question": "caf\xe9 au lait?"}\n')
    with pytest.raises(TracebankError, match=r"latin1\.jsonl(\.gz)?:2: malformed JSON \(.*UTF-8"):
        _import(location, path, spec="prompt=question")
    assert not location.home.exists()


# -- NULL and empty references, prompts --------------------------------------------------------


def test_null_empty_and_blank_references_are_stored_as_none(location, tmp_path):
    rows = [
        {"question": f"What is {i} + 1?", "answer": answer} for i, answer in enumerate([None, "", "  \n", "#### 2"])
    ]
    _import(location, write_jsonl(tmp_path / "r.jsonl", rows))
    with catalog.Catalog(location) as cat:
        stored = dict(cat.sql("SELECT messages[1].content AS q, reference FROM prompts").iter_rows())
    assert stored == {
        "What is 0 + 1?": None,
        "What is 1 + 1?": None,
        "What is 2 + 1?": None,
        "What is 3 + 1?": "#### 2",
    }


def test_a_joined_reference_with_nothing_in_it_is_none(location, tmp_path):
    rows = [
        {"question": "def f(): ...", "test": "", "entry_point": None},
        {"question": "def g(): ...", "test": "assert g() == 1", "entry_point": " "},
    ]
    _import(location, write_jsonl(tmp_path / "c.jsonl", rows), spec="prompt=question,reference=test+entry_point",
            task="code")  # fmt: skip
    with catalog.Catalog(location) as cat:
        stored = dict(cat.sql("SELECT messages[1].content AS q, reference FROM prompts").iter_rows())
    assert stored["def f(): ..."] is None
    assert orjson.loads(stored["def g(): ..."]) == {"test": "assert g() == 1", "entry_point": None}


@pytest.mark.parametrize("prompt", [None, "", [], {}, 7])
def test_a_null_or_empty_prompt_is_refused_with_its_line(location, tmp_path, prompt):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "What is 1 + 1?"}, {"question": prompt}])
    with pytest.raises(TracebankError, match=r"p\.jsonl:2: the prompt (is empty or not text|has no user message)"):
        _import(location, path, spec="prompt=question")
    assert not location.home.exists()


# -- SQL in names and arguments ------------------------------------------------------------------


POLICY = {"name": "all", "rules": [], "splits": {"train": 1.0}}


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[catalog.CatalogLocation, ReleaseRef]:
    """One catalog for the tests that must leave it as it was: toy (6 prompts, 4 traces each) released as v1."""
    home = tmp_path_factory.mktemp("released")
    location = catalog.locate(home / "catalog")
    rows = [{"id": f"q{i}", "question": q, "answer": f"#### {a}"} for i, (q, a) in enumerate(QUESTIONS.items())]
    _import(location, write_jsonl(home / "math.jsonl", rows), dataset="toy")
    build(location, BuildConfig("toy", samples=4), FakeTeacher())
    score(location, ScoreConfig("toy"))
    releases.curate(location, "toy", Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "hostile input tests")
    return location, ReleaseRef.parse("toy@v1")


@pytest.fixture
def toy_catalog(released):
    return released[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["import", "{file}", "-d", HOSTILE, "--map", "prompt=question"], "dataset name"),
        (["build", HOSTILE, "--backend", "replay", "--replay-file", "{file}"], "unknown dataset"),
        (["build", "toy", "--split-hint", "x' OR '1'='1", "--backend", "replay", "--replay-file", "{file}"],
         "no prompts with split hint"),
        (["score", HOSTILE], "unknown dataset"),
        (["score", "toy", "--filter", HOSTILE], "unknown filter"),
        (["score", "toy", "--filter", "near_dup", "--option", f"near_dup.threshold={HOSTILE}"], "threshold"),
        (["score", "toy", "--filter", "decontam", "--option", f'decontam.benchmarks=["{HOSTILE}"]'], "benchmark"),
        (["score", "toy", "--option", f"near_dup.threshold=['{HOSTILE}']"], "not valid YAML"),
        (["run", "{file}", "--set", f"name=['{HOSTILE}']"], "not valid YAML"),
        (["score", "toy", "--option", f"{HOSTILE}.x=1"], "options for"),
        (["versions", HOSTILE], "unknown dataset"),
        (["card", f"{HOSTILE}@v1"], "release"),
        (["publish", f"{HOSTILE}@v1", "--to", "{tmp}/out"], "release"),
        (["diff", "toy@v1", f"{HOSTILE}@v2"], "release"),
    ],
)  # fmt: skip
def test_sql_in_names_and_arguments_is_refused_or_bound(toy_catalog, tmp_path, capsys, args, fragment):
    write_jsonl(tmp_path / "in.jsonl", [{"question": "What is 1 + 1?", "text": "#### 2"}])
    args = [a.replace("{file}", str(tmp_path / "in.jsonl")).replace("{tmp}", str(tmp_path)) for a in args]
    before = tree_fingerprint(toy_catalog.home)
    code, err = run_cli(capsys, *args, "--catalog", str(toy_catalog.home))
    assert code == 1 and _one_line(err).startswith("error: ") and fragment in err, err
    assert tree_fingerprint(toy_catalog.home) == before
    with catalog.Catalog(toy_catalog) as cat:
        assert cat.datasets() == ["toy"] and cat.scalar("SELECT count(*) FROM traces") == 24
    assert not (tmp_path / "out").exists()


def test_a_hostile_name_in_a_read_only_query_is_data(toy_catalog, capsys):
    code, _ = run_cli(capsys, "sql", "SELECT count(*) AS n FROM prompts WHERE dataset = $$" + HOSTILE + "$$",
                      "--format", "json", "--catalog", str(toy_catalog.home))  # fmt: skip
    assert code == 0 and orjson.loads(capsys.readouterr().out or "[]") in ([], [{"n": 0}])


# -- another dataset's ids ---------------------------------------------------------------------


def _rows_of(location, dataset):
    with catalog.Catalog(location) as cat:
        return cat.sql("SELECT * FROM prompts WHERE dataset = ? ORDER BY prompt_id", [dataset]).to_dicts()


def test_a_file_that_carries_another_datasets_ids_cannot_touch_it(location, tmp_path, math_dataset):
    theirs = _rows_of(location, math_dataset)
    claims = [{"prompt_id": r["prompt_id"], "trace_id": r["prompt_id"], "dataset": math_dataset,
               "question": r["messages"][0]["content"], "answer": "#### 0", "solution": "#### 0"} for r in theirs]  # fmt: skip
    _import(location, write_jsonl(tmp_path / "claims.jsonl", claims), dataset="mine",
            spec="prompt=question,reference=answer,response=solution")  # fmt: skip
    assert _rows_of(location, math_dataset) == theirs
    mine = _rows_of(location, "mine")
    assert len(mine) == len(theirs) and not {r["prompt_id"] for r in mine} & {r["prompt_id"] for r in theirs}


def test_an_import_whose_ids_another_dataset_holds_is_refused(location, tmp_path):
    messages = [{"role": "user", "content": "What is 1 + 1?"}]
    squatter = {**dict.fromkeys(records.PROMPTS.names), "prompt_id": hashing.prompt_id("mine", messages),
                "dataset": "other", "task": "math", "messages": messages, "source": "hand", "source_id": "1",
                "imported_at": records.now()}  # fmt: skip
    with catalog.writing(location, "a row under an id that dataset 'mine' will compute") as writer:
        writer.insert("prompts", records.to_table([squatter], records.PROMPTS))
    before = tree_fingerprint(location.home)
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "What is 1 + 1?"}])
    with pytest.raises(TracebankError, match=r"already belong to another dataset \('other' holds prompt_id"):
        _import(location, path, dataset="mine", spec="prompt=question")
    assert tree_fingerprint(location.home) == before


# -- publish targets -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["../" * 40 + "etc/tracebank-x", "/usr/share/tracebank-x", "/", "/var"])
def test_publish_refuses_system_locations(released, target, capsys):
    location, ref = released
    code, err = run_cli(capsys, "publish", str(ref), "--to", target, "--catalog", str(location.home))
    assert code == 1 and "a system location" in _one_line(err)
    assert not Path("/etc/tracebank-x").exists() and not Path("/usr/share/tracebank-x").exists()


def test_card_refuses_a_system_location(released, capsys):
    location, ref = released
    code, err = run_cli(capsys, "card", str(ref), "--out", "/etc/tracebank-cards", "--catalog", str(location.home))
    assert code == 1 and "--out /etc/tracebank-cards is /etc/tracebank-cards, a system location" in _one_line(err)
    assert not Path("/etc/tracebank-cards").exists()


def test_publish_refuses_files_links_and_other_datasets_exports(released, tmp_path):
    location, ref = released
    plain = tmp_path / "notes.txt"
    plain.write_text("keep me")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    other = tmp_path / "other-export"
    other.mkdir()
    (other / MARKER).write_bytes(orjson.dumps({"dataset": "someone-else", "version": 3}))
    (other / "README.md").write_text("their card")
    before = tree_fingerprint(tmp_path)
    for target, message in [(plain, "is a file"), (tmp_path / "link", "is a link"), (other, "'someone-else'")]:
        with pytest.raises(TracebankError, match=message):
            publish(location, ref, str(target))
    assert tree_fingerprint(tmp_path) == before and not any(elsewhere.iterdir())


# -- catalog paths and links ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/etc", "/", "../" * 40 + "usr/lib/tracebank", "/sys/x"])
def test_a_catalog_in_a_system_location_is_refused(path):
    with pytest.raises(TracebankError, match="the catalog .* a system location"):
        catalog.locate(path)


@pytest.mark.parametrize("path", ["/usr/src/app/.tracebank", "/home/me/.tracebank", "/var/lib/tracebank"])
def test_project_places_under_system_directories_are_fine(path):
    assert catalog.locate(path).home == Path(path)


def test_a_catalog_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TracebankError, match="is a file, not a directory"):
        catalog.locate(tmp_path / "file")


@pytest.mark.parametrize("what", ["data dir", "data file"])
def test_links_out_of_the_catalog_are_refused_by_every_command(location, math_dataset, tmp_path, capsys, what):
    outside = tmp_path / "outside"
    if what == "data dir":
        location.data_path.rename(outside)
        location.data_path.symlink_to(outside)
    else:
        outside.write_bytes(b"not yours")
        (next(location.data_path.rglob("*.parquet")).parent / "extra.parquet").symlink_to(outside)
    before = tree_fingerprint(tmp_path)
    with pytest.raises(TracebankError, match=r"in the catalog links to .*outside, outside the catalog"):
        catalog.locate(location.home)
    code, err = run_cli(capsys, "import", str(tmp_path / "math.jsonl"), "-d", "toy2", "--map", "prompt=question",
                        "--catalog", str(location.home))  # fmt: skip
    assert code == 1 and "outside the catalog" in _one_line(err)
    assert tree_fingerprint(tmp_path) == before


def test_links_inside_the_catalog_and_things_that_are_not_its_own_are_fine(location, math_dataset, tmp_path):
    (location.data_path / "latest").symlink_to(next(location.data_path.rglob("*.parquet")))
    (location.home / "notes").symlink_to(tmp_path)  # not the catalog's: not its business
    assert catalog.locate(location.home).home == location.home
