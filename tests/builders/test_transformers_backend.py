"""The local backend with the real embedded SmolLM2 weights (converted once, then cached)."""

import pytest

from tracebank.builders.base import SamplingParams
from tracebank.builders.plans import plan_requests
from tracebank.builders.transformers_backend import TransformersTeacher
from tracebank.models import DEFAULT_MODEL

pytestmark = pytest.mark.slow


def test_generates_one_response_per_request_with_token_counts():
    teacher = TransformersTeacher(DEFAULT_MODEL, batch_size=4)
    prompts = [
        {"prompt_id": "p1", "task": "math", "messages": [{"role": "user", "content": "What is 2 + 3?"}]},
        {
            "prompt_id": "p2",
            "task": "math",
            "messages": [{"role": "user", "content": "A farmer has 12 cows and sells 5. How many are left?"}],
        },
    ]
    requests = plan_requests(prompts, DEFAULT_MODEL, SamplingParams(temperature=0.7, max_new_tokens=12), samples=2)
    responses = {r.key: r for r in teacher.generate(requests)}
    assert set(responses) == {r.key for r in requests}
    for response in responses.values():
        assert response.text and response.finish_reason in ("stop", "length")
        assert response.prompt_tokens > 10 and 1 <= response.completion_tokens <= 12
        assert response.finish_reason == "stop" or response.completion_tokens == 12


def test_greedy_decoding_is_deterministic():
    teacher = TransformersTeacher(DEFAULT_MODEL)
    prompts = [{"prompt_id": "p", "task": "text", "messages": [{"role": "user", "content": "Name a colour."}]}]
    requests = plan_requests(prompts, DEFAULT_MODEL, SamplingParams(temperature=0.0, max_new_tokens=8), samples=2)
    texts = [r.text for r in teacher.generate(requests)]
    assert len(texts) == 2 and texts[0] == texts[1]
