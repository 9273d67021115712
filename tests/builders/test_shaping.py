"""Shaping: notes change only their prompts' requests (and keys), label every request, tag every trace."""

import orjson
import pytest

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.base import SamplingParams
from tracebank.builders.plans import PlanSpec, Shaping, plan_requests, shaped
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError
from tracebank.hashing import request_key

PROMPTS = [
    {"prompt_id": f"p{i}", "task": "math", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]}
    for i in range(3)
]
PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=64)
NOTE = "Hint: the answer is 2."


def _plain(strategy="default", samples=2):
    return plan_requests(PROMPTS, "m", PARAMS, samples, seed=0, spec=PlanSpec(strategy))


def test_a_note_ends_the_last_user_message_and_changes_only_its_prompts_keys():
    plain = _plain()
    shaped_requests = list(shaped(plain, Shaping("hint", {"p1": NOTE})))
    assert len(shaped_requests) == len(plain)
    for before, after in zip(plain, shaped_requests, strict=True):
        if before.prompt_id == "p1":
            assert after.messages[-1]["content"] == f"{before.messages[-1]['content']}\n\n{NOTE}"
            assert after.messages[:-1] == before.messages[:-1]
            assert after.key != before.key
            assert after.key == request_key("m", after.messages, after.params.as_dict(), after.sample_idx)
        else:
            assert (after.messages, after.key) == (before.messages, before.key)  # un-noted: the plain key
        assert (after.prompt_id, after.sample_idx, after.params) == (before.prompt_id, before.sample_idx, before.params)


def test_the_note_goes_into_the_last_user_turn_after_a_system_prompt():
    plain = _plain("styles", samples=1)
    after = next(r for r in shaped(plain, Shaping("hint", {"p0": NOTE})) if r.prompt_id == "p0")
    assert after.messages[0]["role"] == "system" and NOTE not in after.messages[0]["content"]
    assert after.messages[-1]["role"] == "user" and after.messages[-1]["content"].endswith(NOTE)


def test_the_label_is_the_strategy_or_joins_the_plan_label():
    assert {r.strategy for r in shaped(_plain(), Shaping("hint", {"p1": NOTE}))} == {"hint"}
    styled = list(shaped(_plain("styles"), Shaping("round=2")))
    assert all(r.strategy.startswith("styles=") and r.strategy.endswith(";round=2") for r in styled)


def test_tags_give_round_hinted_and_each_prompt_lineage():
    shaping = Shaping("hint", {"p1": NOTE}, round=3, hinted=True, lineage={"p1": '{"hint": "answer"}'})
    assert shaping.tags("p1") == {"round": 3, "hinted": True, "lineage": '{"hint": "answer"}'}
    assert shaping.tags("p0") == {"round": 3, "hinted": True, "lineage": None}
    assert Shaping("plain").tags("p0") == {"round": None, "hinted": None, "lineage": None}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"label": ""}, "a shaping label must be non-empty text without ';'"),
        ({"label": "a;b"}, "without ';'"),
        ({"label": "hint", "round": 0}, "round must be 1 or more, got 0"),
        ({"label": "hint", "round": -2}, "round must be 1 or more"),
    ],
)
def test_validation(values, message):
    with pytest.raises(TracebankError, match=message):
        Shaping(**values)


def test_a_shaped_build_stores_its_tags_and_keeps_plain_traces_apart(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=1), FakeTeacher())
    with catalog.Catalog(location) as cat:
        first = cat.scalar("SELECT min(prompt_id) FROM prompts WHERE dataset = ?", [math_dataset])
    lineage = orjson.dumps({"hint": "answer", "answer": "7"}).decode()
    shaping = Shaping("hint", {first: NOTE}, round=2, hinted=True, lineage={first: lineage})
    teacher = FakeTeacher()
    result = build(location, BuildConfig(math_dataset, samples=1), teacher, shaping)
    assert result.sent == 1 and result.existing == 5  # only the noted prompt's request is new
    with catalog.Catalog(location) as cat:
        rows = cat.arrow(
            "SELECT prompt_id, strategy, round, hinted, lineage FROM traces WHERE dataset = ? AND hinted",
            [math_dataset],
        ).to_pylist()
        plain = cat.scalar("SELECT count(*) FROM traces WHERE dataset = ? AND hinted IS NULL", [math_dataset])
    assert rows == [{"prompt_id": first, "strategy": "hint", "round": 2, "hinted": True, "lineage": lineage}]
    assert plain == 6  # the plain traces are untouched, the noted one is stored beside them
