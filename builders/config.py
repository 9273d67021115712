"""What a build is asked (:class:`BuildConfig`) and what it reports (:class:`BuildResult`, the
:class:`BuildIncomplete` error, and :class:`Tally`, the counters filled while it runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracebank import ray_cluster
from tracebank.builders.base import (
    BACKENDS,
    Response,
    SamplingParams,
    check_options,
)
from tracebank.builders.plans import DEFAULT_LADDER, STYLES, PlanSpec
from tracebank.errors import TracebankError, check_at_least
from tracebank.importer import POLICIES
from tracebank.models import DEFAULT_MODEL

FEWSHOT_POOL = 256  # prompts with a reference offered as few-shot examples (train split first)


@dataclass(frozen=True)
class BuildConfig:
    dataset: str
    backend: str = "transformers"  # key into builders.base.BACKENDS
    model: str = DEFAULT_MODEL
    policy: str = "teacher"  # teacher | student: who wrote the traces
    samples: int = 2  # traces per prompt
    limit: int | None = None  # build for the first N prompts (ordered by prompt_id: a stable sample)
    split_hint: str | None = None  # only prompts with this split hint
    prompt_ids: tuple[str, ...] | None = None  # only these prompts (closed-loop rounds, generated prompts)
    strategy: str = "default"  # default, or axes varied across samples: ladder, styles, fewshot, paraphrase
    ladder: str = DEFAULT_LADDER  # temperature:top_p steps of the ladder axis
    styles: str = ",".join(STYLES)  # system-prompt styles of the styles axis
    shots: int = 2  # worked examples per request on the fewshot axis
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0
    batch_size: int = 8  # transformers: requests per local generation batch
    refresh: bool = False  # ignore cached responses and traces: sample again
    retry_failed: bool = False  # send again the requests that failed for good (HTTP 400, ...) before
    max_cost_usd: float | None = None  # stop sending when this much is spent (finished work is kept)
    max_tokens: int | None = None  # stop sending when this many tokens (prompt + completion) are spent
    price_in: float | None = None  # USD per 1M input tokens (default: builders.budget.PRICES, 0 if local)
    price_out: float | None = None  # USD per 1M output tokens
    options: dict[str, Any] | None = field(default=None)  # backend options, e.g. base_url, concurrency
    executor: str = "local"  # local | ray: shards the requests to send across Ray tasks (builders.ray_build)
    ray_address: str | None = None  # executor ray: a running cluster (default $RAY_ADDRESS, else a local Ray)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise TracebankError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        ray_cluster.check_executor(self.executor, self.ray_address)
        if self.executor == "ray" and (self.max_cost_usd is not None or self.max_tokens is not None):
            raise TracebankError("max_cost_usd and max_tokens are counted by one process: use --executor local")
        if self.policy not in POLICIES:
            raise TracebankError(f"policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        check_at_least(self, 1, "samples", "batch_size", "limit")
        if self.max_cost_usd is not None and self.max_cost_usd <= 0:
            raise TracebankError(f"max_cost_usd must be positive, got {self.max_cost_usd}")
        check_at_least(self, 1, "max_tokens")
        for name in ("price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise TracebankError(f"{name} must be 0 or more (USD per 1M tokens), got {value}")
        if (self.price_in is None) != (self.price_out is None):
            raise TracebankError("give both price_in and price_out (USD per 1M input and output tokens)")
        self.params()  # validates the sampling parameters
        self.plan()  # validates the strategy, ladder, styles and shots
        check_options(self.backend, self.backend_options())

    def params(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_new_tokens)

    def plan(self) -> PlanSpec:
        return PlanSpec(self.strategy, self.ladder, self.styles, self.shots)

    def backend_options(self) -> dict[str, Any]:
        if self.backend == "transformers":
            return {"batch_size": self.batch_size, **(self.options or {})}
        return dict(self.options or {})


@dataclass(frozen=True)
class BuildResult:
    dataset: str
    prompts: int
    requests: int
    existing: int  # traces already in the catalog
    cached: int  # answered by the request cache
    sent: int  # requests that reached the teacher
    failed: int  # new traces that failed for good (e.g. context too long), with their reason
    traces_new: int
    completion_tokens: int
    seconds: float
    snapshot: int | None
    run_id: str
    unfinished: int = 0  # sent but not finished (retries spent): not stored, sent again next time
    unsent: int = 0  # never sent: a cap stopped the run first
    stopped: str | None = None  # max_cost_usd | max_tokens when a cap stopped the run
    prompt_tokens: int = 0
    cost_usd: float | None = None  # what this run's fresh responses cost (None: price unknown)
    retries: int = 0
    last_error: str | None = None  # why the last unfinished request gave up
    seconds_sending: float = 0.0  # the teacher's part of ``seconds``
    shared: int = 0  # sent by another build running at the same time: read from the request cache


class BuildIncomplete(TracebankError):
    """Some requests did not finish; everything that did is committed. ``result`` says what."""

    def __init__(self, message: str, result: BuildResult):
        super().__init__(message)
        self.result = result


@dataclass
class Tally:
    """Counters of one build, filled as requests and responses stream by (stats are outputs)."""

    prompts: int = 0
    requests: int = 0
    existing: int = 0
    cached: int = 0
    fresh: int = 0
    failed: int = 0
    unfinished: int = 0
    unsent: int = 0
    shared: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cost_usd: float | None = 0.0
    seconds_sending: float = 0.0
    last_error: str | None = None

    @property
    def sent(self) -> int:
        return self.fresh + self.unfinished

    def add(self, response: Response) -> None:
        self.fresh += 1
        self.failed += response.failed
        self.prompt_tokens += (response.prompt_tokens or 0) // max(response.shared_by, 1)
        self.completion_tokens += response.completion_tokens or 0
