import pytest

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score


@pytest.fixture
def built(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    return math_dataset


def test_scores_every_trace_and_stores_reasons(location, built):
    result = score(location, ScoreConfig(built))
    stats = {s.filter: s for s in result.filters}
    assert (stats["correctness"].passed, stats["correctness"].failed) == (6, 6)  # FakeTeacher: odd samples wrong
    assert stats["exact_dup"].traces == 12 and result.snapshot is not None
    with catalog.Catalog(location) as cat:
        reasons = dict(cat.sql("SELECT reason, count(*) FROM scores WHERE metric = 'correct' GROUP BY 1").iter_rows())
        assert reasons == {"correct": 6, "mismatch": 6}
        assert cat.scalar("SELECT count(DISTINCT (trace_id, filter, metric)) = count(*) FROM scores")  # one row per key


def test_rescoring_unchanged_data_writes_nothing(location, built):
    score(location, ScoreConfig(built))
    again = score(location, ScoreConfig(built))
    assert again.snapshot is None and all(s.changed == 0 for s in again.filters)


def test_new_traces_rescore_only_what_changed(location, built):
    score(location, ScoreConfig(built))
    build(
        location,
        BuildConfig(built, samples=1, temperature=0.0),
        FakeTeacher(text="Sample 0: reasoning about it.\n#### 0"),
    )
    result = score(location, ScoreConfig(built))
    stats = {s.filter: s for s in result.filters}
    assert stats["correctness"].changed == 6  # only the 6 new traces
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM scores WHERE filter = 'correctness' AND metric = 'correct'") == 18


def test_unknown_filter_and_dataset(location, built):
    with pytest.raises(TracebankError, match="unknown filter 'vibes'"):
        ScoreConfig(built, ("vibes",))
    with pytest.raises(TracebankError, match="unknown dataset"):
        score(location, ScoreConfig("absent"))


def test_filter_options_reach_the_scorer_and_its_stored_version(location, built):
    result = score(location, ScoreConfig(built, ("near_dup",), {"near_dup": {"threshold": 0.5, "scope": "dataset"}}))
    assert result.snapshot is not None
    with catalog.Catalog(location) as cat:
        versions = cat.sql("SELECT DISTINCT filter_version FROM scores WHERE filter = 'near_dup'")["filter_version"]
        config = cat.scalar("SELECT config FROM runs WHERE run_id = ?", [result.run_id])
    assert versions.to_list() and versions[0].startswith("1+") and '"threshold":0.5' in config
    # FakeTeacher's traces differ only in a digit or two: across the dataset they are near duplicates.
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT sum(value) FROM scores WHERE filter = 'near_dup' AND metric = 'is_near_dup'") > 0
    again = score(location, ScoreConfig(built, ("near_dup",), {"near_dup": {"threshold": 0.5, "scope": "dataset"}}))
    assert again.snapshot is None
    default = score(location, ScoreConfig(built, ("near_dup",)))
    assert default.snapshot is not None and {s.changed for s in default.filters} == {12}  # version changed: all
