"""bench/catalog_scale.py fills every column of the tables it writes from tracebank.records and runs at its smoke size."""

import pytest

from tests.bench import load, run_smoke
from tracebank import catalog, records


def test_the_fill_writes_a_real_catalog_that_the_stages_read(tmp_path):
    bench = load("catalog_scale")
    location = catalog.locate(tmp_path / "catalog")
    bench.fill(location, 40)
    with catalog.Catalog(location) as cat:
        counts = {t: cat.scalar(f"SELECT count(*) FROM {t}") for t in ("prompts", "traces", "scores")}
        unset = cat.scalar("SELECT count(*) FROM prompts WHERE origin IS NULL AND parents IS NULL AND meta IS NULL")
    assert counts == {"prompts": 10, "traces": 40, "scores": 160} and unset == 10
    for table, _, values in bench.FILL:
        assert set(values) <= set(records.TABLES[table].names)


def test_a_required_column_without_a_value_is_named(monkeypatch):
    bench = load("catalog_scale")
    table, rows, values = bench.FILL[0]
    monkeypatch.setattr(bench, "FILL", ((table, rows, {k: v for k, v in values.items() if k != "source_id"}),))
    with pytest.raises(SystemExit, match=r"prompts\.source_id may not be NULL"):
        bench.fill_statements(40)
    monkeypatch.setattr(bench, "FILL", ((table, rows, {**values, "colour": "'red'"}),))
    with pytest.raises(SystemExit, match=r"prompts has no column \['colour'\]"):
        bench.fill_statements(40)


def test_smoke_run_prints_every_operation_and_the_goals_last(tmp_path):
    out = run_smoke("catalog_scale", "--dir", str(tmp_path))
    lines = out.rstrip().splitlines()
    for operation in ("sql aggregate (open + query)", "sql aggregate (CLI process)", "curate (decide", "diff v1 -> v2"):
        assert any(line.startswith(operation) for line in lines), operation
    goals = lines[next(i for i, line in enumerate(lines) if line.startswith("== goals")) :]
    assert len(goals) >= 5 and all(g[:4] in ("met ", "MISS") for g in goals[1:-1]), goals
    assert "release v1 kept" in out
