"""Diversity plans: each axis varies what it says, deterministically, and labels every request."""

import pytest

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.base import SamplingParams
from tracebank.builders.plans import STYLES, PlanSpec, plan_requests
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError
from tracebank.hashing import request_key
from tracebank.tasks.math import INSTRUCTION

PROMPTS = [
    {"prompt_id": f"p{i}", "task": "math", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
     "reference": f"{i} + {i} = {2 * i}\n#### {2 * i}"}
    for i in range(5)
]  # fmt: skip
PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=64)


def _plan(strategy, samples=4, **spec):
    return plan_requests(PROMPTS, "m", PARAMS, samples, seed=3, spec=PlanSpec(strategy, **spec), pool=PROMPTS)


def test_default_plan_keeps_the_request_keys_of_earlier_builds():
    for request in _plan("default", samples=2):
        messages = [
            {
                "role": "user",
                "content": f"{PROMPTS[int(request.prompt_id[1:])]['messages'][0]['content']}\n\n{INSTRUCTION}",
            }
        ]
        params = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 64, "seed": 3 + request.sample_idx}
        assert request.key == request_key("m", messages, params, request.sample_idx) and request.strategy == "default"


def test_styles_give_each_sample_of_a_prompt_a_different_system_prompt():
    requests = _plan("styles", samples=4)
    for prompt in PROMPTS:
        mine = [r for r in requests if r.prompt_id == prompt["prompt_id"]]
        systems = {r.messages[0]["content"] for r in mine}
        assert systems == set(STYLES.values())  # 4 samples, 4 styles: every style once
        assert {r.strategy for r in mine} == {f"styles={name}" for name in STYLES}
    assert len({r.key for r in requests}) == len(requests)


def test_ladder_varies_temperature_and_top_p_and_keeps_seeds():
    requests = _plan("ladder", samples=3, ladder="0.2:1.0,0.8:0.9,1.2:0.8")
    for prompt in PROMPTS:
        mine = [r for r in requests if r.prompt_id == prompt["prompt_id"]]
        assert {(r.params.temperature, r.params.top_p) for r in mine} == {(0.2, 1.0), (0.8, 0.9), (1.2, 0.8)}
        assert all(
            r.params.seed == 3 + r.sample_idx and r.strategy == f"ladder={r.params.temperature:g}/{r.params.top_p:g}"
            for r in mine
        )
    first_steps = {next(r for r in requests if r.prompt_id == p["prompt_id"]).params.temperature for p in PROMPTS}
    assert len(first_steps) > 1  # the rotation starts at a different step per prompt


def test_fewshot_rotates_worked_examples_and_never_shows_a_prompt_its_own_answer():
    requests = _plan("fewshot", samples=2, shots=2)
    for request in requests:
        shots = [m for m in request.messages if m["role"] == "assistant"]
        assert len(shots) == 2 and len(request.messages) == 5
        own = next(p for p in PROMPTS if p["prompt_id"] == request.prompt_id)
        assert own["reference"] not in [m["content"] for m in shots]
        assert request.messages[-1]["content"].startswith(own["messages"][0]["content"])
    for prompt in PROMPTS:
        mine = [r for r in requests if r.prompt_id == prompt["prompt_id"]]
        assert mine[0].messages != mine[1].messages and mine[0].strategy != mine[1].strategy


def test_paraphrases_keep_the_answer_format_the_parser_reads():
    requests = _plan("paraphrase", samples=4)
    instructions = {r.messages[-1]["content"].split("\n\n", 1)[1] for r in requests}
    assert len(instructions) == 4 and all("'#### <number>'" in text for text in instructions)


def test_axes_combine_and_plans_are_deterministic():
    first, again = _plan("styles,ladder,paraphrase"), _plan("styles,ladder,paraphrase")
    assert [r.key for r in first] == [r.key for r in again]
    assert all(r.strategy.count(";") == 2 and r.strategy.startswith("styles=") for r in first)
    other_seed = plan_requests(PROMPTS, "m", PARAMS, 4, seed=4, spec=PlanSpec("styles,ladder,paraphrase"), pool=PROMPTS)
    assert {r.key for r in other_seed}.isdisjoint({r.key for r in first})


def test_fewshot_needs_a_pool():
    with pytest.raises(TracebankError, match="at least 2 prompts with a reference"):
        plan_requests(PROMPTS, "m", PARAMS, 2, spec=PlanSpec("fewshot"), pool=PROMPTS[:1])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"strategy": "chaos"}, "unknown strategy"),
        ({"strategy": ""}, "unknown strategy"),
        ({"strategy": "styles,styles"}, "names an axis twice"),
        ({"ladder": "hot"}, "temperature:top_p pairs"),
        ({"ladder": ""}, "at least one"),
        ({"ladder": "9:1"}, "temperature"),
        ({"ladder": "0.5:0"}, "top_p"),
        ({"styles": "pirate"}, "unknown style 'pirate'"),
        ({"styles": ""}, "unknown style"),
        ({"shots": 0}, "shots"),
        ({"shots": 17}, "shots"),
    ],
)
def test_plan_spec_validation(spec, message):
    with pytest.raises(TracebankError, match=message):
        PlanSpec(**spec)


def test_strategy_is_stored_on_every_trace(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=4, strategy="styles,fewshot"), FakeTeacher())
    with catalog.Catalog(location) as cat:
        strategies = cat.sql("SELECT strategy FROM traces").to_series().to_list()
    assert len(strategies) == 24 and all(s.startswith("styles=") and ";fewshot=" in s for s in strategies)
