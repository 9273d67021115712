import pytest

from tests.conftest import tree_fingerprint
from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.errors import TracebankError

POLICY = {
    "name": "correct-only",
    "rules": [
        {
            "name": "wrong",
            "when": "NOT coalesce(correctness.passed, false)",
            "action": "drop",
            "reason": "correctness.reason",
        }
    ],
    "splits": {"train": 0.5, "test": 0.5},
}


def _curate(location, dataset, policy=POLICY, message="first"):
    return releases.curate(location, dataset, Policy.from_dict(policy), str(policy), message)


def test_release_is_one_snapshot_with_a_decision_per_trace(location, scored):
    result = _curate(location, scored)
    assert (result.created, result.version) == (True, 1)
    with catalog.Catalog(location) as cat:
        assert cat.snapshot_id() == result.snapshot_id
        message = cat.scalar("SELECT commit_message FROM lake.snapshots() WHERE snapshot_id = ?", [result.snapshot_id])
        assert message == f"release {scored}@v1: first"
        assert cat.scalar("SELECT count(*) FROM decisions WHERE version = 1") == cat.scalar(
            "SELECT count(*) FROM traces"
        )
        release = cat.sql("SELECT * FROM releases").row(0, named=True)
    assert release["snapshot_id"] == result.snapshot_id and release["teachers"] == ["smollm2-135m-instruct"]
    assert sum(c["n"] for c in release["counts"]) == 24 and sum(c["n"] for c in release["counts"] if c["keep"]) == 12
    assert release["policy_name"] == "correct-only" and release["inputs_digest"] and release["code_version"]
    assert result.unscored == {}


def test_same_inputs_and_policy_make_no_new_release(location, scored):
    first = _curate(location, scored)
    before = tree_fingerprint(location.home)
    again = _curate(location, scored, message="again")
    assert (again.created, again.version, again.snapshot_id) == (False, 1, first.snapshot_id)
    assert tree_fingerprint(location.home) == before


def test_new_policy_makes_v2_and_v1_stays_queryable(location, scored):
    _curate(location, scored)
    second = _curate(location, scored, {**POLICY, "rules": [], "name": "keep-all"}, "everything")
    assert (second.created, second.version) == (True, 2)
    frame = releases.versions(location, scored)
    assert frame["version"].to_list() == [1, 2] and frame["kept"].to_list() == [12, 24]
    with catalog.Catalog(location) as cat:
        digests = cat.sql("SELECT inputs_digest, decisions_digest FROM releases ORDER BY version").rows()
    assert digests[0][0] == digests[1][0] and digests[0][1] != digests[1][1]  # same inputs, other decisions
    with catalog.Catalog(location) as cat:
        v1 = releases.resolve(cat, ReleaseRef.parse(f"{scored}@v1"))
        assert cat.scalar("SELECT count(*) FROM releases AT (VERSION => ?)", [v1["snapshot_id"]]) == 1


def test_unscored_traces_are_reported_and_new_inputs_change_the_digest(location, scored):
    _curate(location, scored)
    build(location, BuildConfig(scored, samples=5), FakeTeacher())
    second = _curate(location, scored, message="more traces")
    assert second.unscored == {"correctness": 6, "exact_dup": 6}
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(DISTINCT inputs_digest) FROM releases") == 2


def test_release_refs():
    assert ReleaseRef.parse("gsm8k@v12") == ReleaseRef("gsm8k", 12)
    assert ReleaseRef.parse("gsm8k") == ReleaseRef("gsm8k", None) == ReleaseRef.parse("gsm8k@latest")
    for bad in ("gsm8k@12", "@v1", "gsm8k@vx", "a b@v1"):
        with pytest.raises(TracebankError, match="expected DATASET@vN"):
            ReleaseRef.parse(bad)


def test_unknown_dataset_and_version_are_clear_errors(location, scored):
    with catalog.Catalog(location) as cat, pytest.raises(TracebankError, match="has no releases yet"):
        releases.resolve(cat, ReleaseRef.parse(scored))
    _curate(location, scored)
    with catalog.Catalog(location) as cat:
        with pytest.raises(TracebankError, match="has no version v7; versions: v1"):
            releases.resolve(cat, ReleaseRef.parse(f"{scored}@v7"))
        with pytest.raises(TracebankError, match="unknown dataset 'nope'"):
            releases.resolve(cat, ReleaseRef.parse("nope@v1"))


def test_curate_needs_traces_and_a_message(location, math_dataset):
    with pytest.raises(TracebankError, match="needs a message"):
        _curate(location, math_dataset, message=" ")
    before = tree_fingerprint(location.home)
    with pytest.raises(TracebankError, match="no traces to curate"):
        _curate(location, math_dataset, {**POLICY, "rules": []})
    assert {k: v for k, v in tree_fingerprint(location.home).items() if k != "write.lock"} == {
        k: v for k, v in before.items() if k != "write.lock"
    }
