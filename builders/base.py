"""The builder contract: requests in, responses out, through a one-method teacher Protocol.

Builders never import a transport. A backend is chosen by an explicit config key looked up in
:data:`BACKENDS`, never by a substring of the model name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from tracebank.errors import TracebankError


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
        if self.max_new_tokens < 1:
            raise TracebankError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    key: str  # hashing.request_key(model, messages, params, sample_idx)
    prompt_id: str
    model: str
    messages: list[dict[str, str]]
    params: SamplingParams
    sample_idx: int
    strategy: str


@dataclass(frozen=True)
class Response:
    key: str
    text: str | None
    finish_reason: str  # stop | length | error
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None  # why a request failed for good (not retried on rerun)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> Response:
        return cls(**orjson.loads(payload))


class Teacher(Protocol):
    """Anything that turns requests into responses: yield each response as soon as it is done."""

    backend: str

    def generate(self, requests: Sequence[Request]) -> Iterator[Response]: ...


# config key -> "module:factory"; a factory takes (model, options) and returns a Teacher.
BACKENDS: dict[str, str] = {
    "transformers": "tracebank.builders.transformers_backend:TransformersTeacher",
}


def make_teacher(backend: str, model: str, options: dict[str, Any] | None = None) -> Teacher:
    """Instantiate the backend named by ``backend`` (imported only when used)."""
    if backend not in BACKENDS:
        raise TracebankError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    module_name, factory_name = BACKENDS[backend].split(":")
    factory: Callable[..., Teacher] = getattr(importlib.import_module(module_name), factory_name)
    return factory(model, **(options or {}))
