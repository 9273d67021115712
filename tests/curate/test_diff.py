import pytest

from tests.fakes import FakeTeacher
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.diff import diff
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score

KEEP_CORRECT = {
    "name": "correct",
    "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}],
    "splits": {"train": 1.0},
}


def _release(location, dataset, policy, message):
    return releases.curate(location, dataset, Policy.from_dict(policy), str(policy), message)


def test_diff_counts_added_and_removed_rows_per_split_and_rule(location, scored):
    _release(location, scored, KEEP_CORRECT, "correct only")  # 12 of 24 kept
    _release(location, scored, {**KEEP_CORRECT, "name": "capped", "max_per_prompt": 1}, "one per prompt")  # 6 kept
    result = diff(location, ReleaseRef.parse(f"{scored}@v1"), ReleaseRef.parse(f"{scored}@v2"))
    assert (result.added, result.removed, result.moved) == (0, 6, 0)
    assert result.changes.to_dicts() == [{"change": "removed", "split": "train", "rule": "quota", "traces": 6}]
    funnel = {(r["rule"], r["keep"]): (r["before"], r["after"], r["delta"]) for r in result.funnel.to_dicts()}
    assert funnel == {("default", True): (12, 6, -6), ("quota", False): (0, 6, 6), ("wrong", False): (12, 12, 0)}


def test_new_traces_show_as_added_under_the_rule_that_kept_them(location, scored):
    _release(location, scored, KEEP_CORRECT, "v1")
    build(location, BuildConfig(scored, samples=5), FakeTeacher())  # sample 4 of each prompt: correct
    score(location, ScoreConfig(scored))
    _release(location, scored, KEEP_CORRECT, "v2")
    result = diff(location, ReleaseRef.parse(f"{scored}@v1"), ReleaseRef.parse(scored))
    assert result.changes.to_dicts() == [{"change": "added", "split": "train", "rule": "default", "traces": 6}]
    assert result.b["version"] == 2


def test_diff_of_unknown_version_is_a_clear_error(location, scored):
    _release(location, scored, KEEP_CORRECT, "v1")
    with pytest.raises(TracebankError, match="no version v5"):
        diff(location, ReleaseRef.parse(f"{scored}@v1"), ReleaseRef.parse(f"{scored}@v5"))
