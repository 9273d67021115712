"""The builder contract: requests in, responses out, through a one-method teacher Protocol.

Builders never import a transport. A backend is chosen by an explicit config key looked up in
:data:`BACKENDS`, never by a substring of the model name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol

import orjson

from tracebank.errors import TracebankError, check_at_least


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters; every field is part of the request cache key."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 5.0:
            raise TracebankError(f"temperature must be in [0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise TracebankError(f"top_p must be in (0, 1], got {self.top_p}")
        check_at_least(self, 1, "max_new_tokens")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # asdict's deep copy costs 5x: hot path


@dataclass(frozen=True)
class Request:
    key: str  # hashing.request_key(model, messages, params, sample_idx)
    prompt_id: str
    model: str
    messages: list[dict[str, str]]
    params: SamplingParams
    sample_idx: int
    strategy: str
    task: str = "text"  # key into tracebank.tasks.TASKS: how the completion's answer is parsed


# A request the backend gave up on for now (retries spent, no recording): never cached, never a
# trace; the next build sends it again. Every other response is final and is cached.
UNFINISHED = "unfinished"


@dataclass(frozen=True)
class Response:
    key: str
    text: str | None
    finish_reason: str  # stop | length | content_filter | error:<kind> (failed for good) | unfinished
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None  # the server's words on why it failed (cached: not re-sent on rerun)
    attempts: int = 1  # sends it took: retries + 1
    shared_by: int = 1  # choices returned by one call (n > 1): they share its prompt tokens

    @property
    def failed(self) -> bool:
        return self.error is not None or self.finish_reason.startswith("error")

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # orjson writes dataclasses natively, fields in order

    @classmethod
    def from_json(cls, payload: bytes) -> Response:
        return cls(**orjson.loads(payload))


class Teacher(Protocol):
    """Anything that turns requests into responses: yield each response as soon as it is done.

    A backend pulls requests from ``requests`` only when it is about to send them (the runner
    stops the iterable when a budget is spent) and yields one response for every request it
    pulled, in any order. A failure that dooms the whole run (a rejected API key) is raised as
    :class:`~tracebank.errors.TracebankError` after the responses already finished are yielded.

    A backend that finishes responses in another thread may also have ``waiting() -> int``: how
    many are ready to be yielded without blocking. The runner then caches each burst of ready
    responses in one transaction instead of one transaction per response.
    """

    backend: str

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]: ...


# config key -> "module:factory"; a factory takes (model, **options) and returns a Teacher.
BACKENDS: dict[str, str] = {
    "transformers": "tracebank.builders.transformers_backend:TransformersTeacher",
    "openai": "tracebank.builders.openai_backend:OpenAITeacher",
    "vllm": "tracebank.builders.vllm_backend:VLLMTeacher",
    "replay": "tracebank.builders.replay_backend:ReplayTeacher",
}
# config key -> "module:OptionsClass": a frozen dataclass of the backend's options, checked in its
# __post_init__ before anything runs (``options:`` in a build config, or the CLI flags).
BACKEND_OPTIONS: dict[str, str] = {
    "transformers": "tracebank.builders.transformers_backend:TransformersOptions",
    "openai": "tracebank.builders.openai_backend:OpenAIOptions",
    "vllm": "tracebank.builders.vllm_backend:VLLMOptions",
    "replay": "tracebank.builders.replay_backend:ReplayOptions",
}
# Backends that run on this machine (or a GPU beside it): a request costs 0 USD.
LOCAL_BACKENDS = ("transformers", "vllm", "replay")


def _load(spec: str) -> Any:
    module_name, name = spec.split(":")
    return getattr(importlib.import_module(module_name), name)


def check_options(backend: str, options: dict[str, Any] | None) -> Any:
    """The backend's options object; unknown keys and bad values fail here, naming the key."""
    if backend not in BACKENDS:
        raise TracebankError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if options is not None and not isinstance(options, dict):
        raise TracebankError(f"{backend} options must be a mapping, got {type(options).__name__}")
    cls = _load(BACKEND_OPTIONS[backend])
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise TracebankError(f"unknown {backend} option {unknown[0]!r}; options are {', '.join(sorted(allowed))}")
    return cls(**(options or {}))


def make_teacher(backend: str, model: str, options: dict[str, Any] | None = None) -> Teacher:
    """Instantiate the backend named by ``backend`` (imported only when used)."""
    check_options(backend, options)
    factory: Callable[..., Teacher] = _load(BACKENDS[backend])
    return factory(model, **(options or {}))
