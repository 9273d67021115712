import pytest

from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog
from tracebank.builders.cache import RequestCache
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError


def _traces(location):
    with catalog.Catalog(location) as cat:
        return cat.sql("SELECT * FROM traces ORDER BY prompt_id, sample_idx").to_dicts()


def test_builds_k_traces_per_prompt_with_parsed_answers(location, math_dataset):
    teacher = FakeTeacher()
    result = build(location, BuildConfig(math_dataset, samples=3), teacher)
    traces = _traces(location)
    assert (result.sent, result.traces_new, len(traces)) == (18, 18, 18)
    assert {t["backend"] for t in traces} == {"fake"} and {t["policy"] for t in traces} == {"teacher"}
    assert all(t["answer"] is not None and t["params"]["seed"] == t["sample_idx"] for t in traces)
    per_prompt = {}
    for t in traces:
        per_prompt.setdefault(t["prompt_id"], []).append(t["sample_idx"])
    assert len(per_prompt) == len(QUESTIONS) and all(sorted(v) == [0, 1, 2] for v in per_prompt.values())


def test_rerun_sends_zero_requests_and_commits_nothing(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    teacher = FakeTeacher()
    again = build(location, BuildConfig(math_dataset, samples=2), teacher)
    assert (teacher.sent, again.sent, again.existing, again.snapshot) == ([], 0, 12, None)


def test_crash_keeps_finished_responses_and_rerun_sends_only_the_rest(location, math_dataset):
    with pytest.raises(RuntimeError, match="died"):
        build(location, BuildConfig(math_dataset, samples=2), FakeTeacher(crash_after=5))
    assert _traces(location) == []  # nothing half-written to the catalog
    with RequestCache(location.request_cache) as cache:
        assert len(cache) == 5  # but every finished response is saved
    teacher = FakeTeacher()
    result = build(location, BuildConfig(math_dataset, samples=2), teacher)
    assert (len(teacher.sent), result.cached, result.traces_new) == (7, 5, 12)


def test_editing_one_parameter_sends_only_the_requests_it_changes(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    more_samples = FakeTeacher()
    build(location, BuildConfig(math_dataset, samples=3), more_samples)
    assert len(more_samples.sent) == len(QUESTIONS)  # only sample_idx 2 is new
    hotter = FakeTeacher()
    build(location, BuildConfig(math_dataset, samples=3, temperature=1.0, limit=2), hotter)
    assert len(hotter.sent) == 2 * 3  # a new temperature is a new request for the prompts it covers


def test_refresh_resamples_and_replaces(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=1, limit=2), FakeTeacher())
    teacher = FakeTeacher(text="fresh sample\n#### 1")
    result = build(location, BuildConfig(math_dataset, samples=1, limit=2, refresh=True), teacher)
    traces = _traces(location)
    assert (len(teacher.sent), result.traces_new, len(traces)) == (2, 2, 2)
    assert {t["rationale"] for t in traces} == {"fresh sample\n#### 1"}


def test_limit_and_split_hint_select_prompts(location, math_dataset):
    result = build(location, BuildConfig(math_dataset, samples=1, limit=4), FakeTeacher())
    assert result.prompts == 4
    with pytest.raises(TracebankError, match="no prompts with split hint 'train'"):
        build(location, BuildConfig(math_dataset, split_hint="train"), FakeTeacher())


def test_unknown_dataset_is_a_clear_error(location, math_dataset):
    with pytest.raises(TracebankError, match="unknown dataset 'nope'; datasets in .*: toy"):
        build(location, BuildConfig("nope"), FakeTeacher())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "carrier-pigeon"}, "unknown backend"),
        ({"samples": 0}, "samples must be at least 1"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"policy": "judge"}, "policy"),
        ({"limit": 0}, "limit"),
        ({"strategy": "chaos"}, "unknown strategy"),
    ],
)
def test_build_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        BuildConfig("d", **kwargs)


def test_student_policy_is_recorded(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=1, policy="student", model="student-model"), FakeTeacher())
    assert {(t["policy"], t["model"]) for t in _traces(location)} == {("student", "student-model")}


def test_bursts_take_what_is_waiting_and_hand_on_a_burst_before_an_error():
    from tracebank.builders.runner import _bursts

    def teacher():
        yield from "abcde"
        raise TracebankError("API key rejected")

    ready = iter([1, 1, 0, 0, 1])  # b and c wait behind a; nothing behind d; the error behind e
    seen = []
    with pytest.raises(TracebankError, match="rejected"):
        for burst in _bursts(teacher(), lambda: next(ready)):
            seen.append(burst)
    assert seen == [["a", "b", "c"], ["d"], ["e"]]
    assert [list(b) for b in _bursts(iter("xyz"), lambda: 1, most=2)] == [["x", "y"], ["z"]]
