"""Sampling plans: expand each prompt into the requests to send, one per sample.

The ``default`` plan sends the task's rendering of the prompt K times with the same sampling
parameters and seeds ``seed + k``. The strategy name is stored on every trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tracebank.builders.base import Request, SamplingParams
from tracebank.hashing import request_key
from tracebank.tasks import get_task

STRATEGIES = ("default",)


def plan_requests(
    prompts: Iterable[Mapping[str, Any]], model: str, params: SamplingParams, samples: int, seed: int = 0
) -> list[Request]:
    """One request per (prompt, sample); prompts need ``prompt_id``, ``task`` and ``messages``."""
    requests = []
    for prompt in prompts:
        messages = get_task(prompt["task"]).render(prompt["messages"])
        for sample_idx in range(samples):
            sample_params = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, seed + sample_idx)
            key = request_key(model, messages, sample_params.as_dict(), sample_idx)
            requests.append(Request(key, prompt["prompt_id"], model, messages, sample_params, sample_idx, "default"))
    return requests
