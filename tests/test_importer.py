import gzip

import datasets
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import tree_fingerprint, write_jsonl
from tracebank import catalog
from tracebank.errors import TracebankError
from tracebank.importer import ColumnMap, ImportConfig, import_data

ROWS = [
    {"id": "a1", "question": "What is 1 + 1?", "answer": "#### 2", "source": "unit"},
    {"id": "a2", "question": "What is 2 + 2?", "answer": "#### 4", "source": "unit"},
]


def _import(location, path, spec="prompt=question,reference=answer,id=id", **kwargs):
    return import_data(location, ImportConfig(str(path), kwargs.pop("dataset", "d"), ColumnMap.parse(spec), **kwargs))


def _rows(location, sql):
    with catalog.Catalog(location) as cat:
        return cat.sql(sql).to_dicts()


def test_imports_prompts_with_source_ids_and_meta(location, tmp_path):
    result = _import(location, write_jsonl(tmp_path / "p.jsonl", ROWS), split_hint="train")
    assert (result.prompts_new, result.traces_new, result.snapshot is not None) == (2, 0, True)
    rows = _rows(location, "SELECT source_id, reference, split_hint, meta, messages FROM prompts ORDER BY source_id")
    assert [r["source_id"] for r in rows] == ["a1", "a2"]
    assert rows[0]["messages"] == [{"role": "user", "content": "What is 1 + 1?"}]
    assert orjson.loads(rows[0]["meta"]) == {"source": "unit"}  # unmapped fields are kept
    assert {r["split_hint"] for r in rows} == {"train"}


def test_reimport_adds_nothing_and_makes_no_snapshot(location, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    _import(location, path)
    again = _import(location, path)
    assert (again.prompts_new, again.prompts_existing, again.snapshot) == (0, 2, None)


def test_row_number_is_the_default_source_id(location, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in ROWS[:1]) + b"\n\n" + orjson.dumps(ROWS[1]) + b"\n")
    _import(location, path, "prompt=question")
    assert [r["source_id"] for r in _rows(location, "SELECT source_id FROM prompts ORDER BY 1")] == ["1", "3"]


def test_wide_responses_become_one_trace_each(location, tmp_path):
    rows = [
        {"question": "What is 3 + 3?", "truth": "A: 6",
         "small": {"solution": "3 + 3 = 6\nA: 6", "is_correct": True},
         "large": {"solution": "3 + 3 = 7\nA: 7", "is_correct": False}},
    ]  # fmt: skip
    result = _import(
        location, write_jsonl(tmp_path / "w.jsonl", rows), "prompt=question,reference=truth,response=*.solution"
    )
    assert (result.prompts_new, result.traces_new) == (1, 2)
    traces = _rows(location, "SELECT model, answer, meta, source_id, backend FROM traces ORDER BY model")
    assert [(t["model"], t["answer"]) for t in traces] == [("large", "7"), ("small", "6")]
    assert [orjson.loads(t["meta"])["is_correct"] for t in traces] == [False, True]
    assert {t["source_id"] for t in traces} == {"1"} and {t["backend"] for t in traces} == {"import"}


def test_long_format_traces_keep_row_fields_on_the_trace(location, tmp_path):
    rows = [
        {"q": "What is 5 - 1?", "out": "#### 4", "who": "m1", "label": 1},
        {"q": "What is 5 - 1?", "out": "#### 3", "who": "m2", "label": 0},
    ]
    result = _import(
        location, write_jsonl(tmp_path / "l.jsonl", rows), "prompt=q,response=out,model=who", policy="student"
    )
    assert (result.prompts_new, result.traces_new) == (1, 2)
    traces = _rows(location, "SELECT model, policy, meta FROM traces ORDER BY model")
    assert [(t["model"], t["policy"], orjson.loads(t["meta"])["label"]) for t in traces] == [
        ("m1", "student", 1),
        ("m2", "student", 0),
    ]


def test_dotted_paths_and_chat_message_prompts(location, tmp_path):
    rows = [{"conv": [{"role": "user", "content": "Hi?"}], "info": {"gold": "#### 1"}}]
    _import(location, write_jsonl(tmp_path / "c.jsonl", rows), "prompt=conv,reference=info.gold", task="text")
    assert _rows(location, "SELECT messages, reference, task FROM prompts") == [
        {"messages": [{"role": "user", "content": "Hi?"}], "reference": "#### 1", "task": "text"}
    ]


@pytest.mark.parametrize("kind", ["json", "jsonl.gz", "parquet", "hf"])
def test_every_input_format_gives_the_same_prompts(location, tmp_path, kind):
    path = tmp_path / f"in.{kind}"
    if kind == "json":
        path.write_bytes(orjson.dumps(ROWS))
    elif kind == "jsonl.gz":
        path.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in ROWS)))
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    else:
        datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(path))
    _import(location, path)
    rows = _rows(location, "SELECT source_id, reference, split_hint FROM prompts ORDER BY 1")
    assert [(r["source_id"], r["reference"]) for r in rows] == [("a1", "#### 2"), ("a2", "#### 4")]
    assert {r["split_hint"] for r in rows} == ({"test"} if kind == "hf" else {None})


def test_limit_imports_the_first_rows(location, tmp_path):
    result = _import(location, write_jsonl(tmp_path / "p.jsonl", ROWS), limit=1)
    assert (result.rows, result.prompts_new) == (1, 1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("reference=answer", "must name the prompt column"),
        ("prompt=question,bogus=x", "unknown key 'bogus'"),
        ("prompt=question,prompt=answer", "given twice"),
        ("prompt=question,reference", "key=column pairs"),
        ("prompt=*.q", "only response may use a wildcard"),
    ],
)
def test_bad_column_maps_are_rejected(spec, message):
    with pytest.raises(TracebankError, match=message):
        ColumnMap.parse(spec)


@pytest.mark.parametrize(
    ("contents", "spec", "message"),
    [
        (b'{"question": "a"}\n{"question": "b"\n', "prompt=question", r"bad\.jsonl:2: malformed JSON"),
        (b'{"question": "a"}\n[1, 2]\n', "prompt=question", r"bad\.jsonl:2: expected a JSON object"),
        (b'{"question": "a"}\n', "prompt=nope", r"unknown column 'nope' in --map prompt=nope; columns: question"),
        (b'{"question": "a"}\n', "prompt=question,response=*.solution", "matches no column"),
        (b'{"question": "a"}\n{"other": 1}\n', "prompt=question", r"bad\.jsonl:2: row has no 'question' column"),
        (b'{"question": "  "}\n', "prompt=question", r"bad\.jsonl:1: the prompt is empty"),
        (b"", "prompt=question", "no rows to import"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(location, tmp_path, contents, spec, message):
    _import(location, write_jsonl(tmp_path / "good.jsonl", ROWS))
    before = tree_fingerprint(location.home)
    (tmp_path / "bad.jsonl").write_bytes(contents)
    with pytest.raises(TracebankError, match=message):
        _import(location, tmp_path / "bad.jsonl", spec)
    assert tree_fingerprint(location.home) == before


def test_missing_file_and_unknown_format(location, tmp_path):
    with pytest.raises(TracebankError, match="no such file"):
        _import(location, tmp_path / "absent.jsonl")
    (tmp_path / "data.xml").write_text("<x/>")
    with pytest.raises(TracebankError, match="unknown format"):
        _import(location, tmp_path / "data.xml")
    assert not location.home.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "bad name"}, "dataset name"),
        ({"task": "chess"}, "unknown task"),
        ({"policy": "judge"}, "policy"),
        ({"limit": 0}, "limit"),
    ],
)
def test_import_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        ImportConfig("x.jsonl", kwargs.pop("dataset", "d"), ColumnMap.parse("prompt=q"), **kwargs)
