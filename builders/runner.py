"""``tracebank build``: plan requests, answer what the cache can, send the rest, store traces.

Order of work: traces already in the catalog are skipped; cached responses are reused; only the
remaining requests reach the teacher, and each response is cached the moment it arrives. The new
traces land in the catalog as one commit at the end.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from tracebank import catalog as catalog_mod
from tracebank import provenance, records, ui
from tracebank.builders.base import BACKENDS, Request, Response, SamplingParams, Teacher, make_teacher
from tracebank.builders.cache import RequestCache
from tracebank.builders.plans import STRATEGIES, plan_requests
from tracebank.errors import TracebankError
from tracebank.importer import POLICIES
from tracebank.models import DEFAULT_MODEL
from tracebank.tasks import get_task

LOCAL_BACKENDS = ("transformers",)  # run on this machine: cost 0 USD


@dataclass(frozen=True)
class BuildConfig:
    dataset: str
    backend: str = "transformers"  # key into builders.base.BACKENDS
    model: str = DEFAULT_MODEL
    policy: str = "teacher"  # teacher | student: who wrote the traces
    samples: int = 2  # traces per prompt
    limit: int | None = None  # build for the first N prompts (ordered by prompt_id: a stable sample)
    split_hint: str | None = None  # only prompts with this split hint
    strategy: str = "default"
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0
    batch_size: int = 8
    refresh: bool = False  # ignore cached responses and traces: sample again

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise TracebankError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.policy not in POLICIES:
            raise TracebankError(f"policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        if self.strategy not in STRATEGIES:
            raise TracebankError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        for name in ("samples", "batch_size"):
            if getattr(self, name) < 1:
                raise TracebankError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise TracebankError(f"limit must be at least 1, got {self.limit}")
        self.params()  # validates the sampling parameters

    def params(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_new_tokens)


@dataclass(frozen=True)
class BuildResult:
    dataset: str
    prompts: int
    requests: int
    existing: int  # traces already in the catalog
    cached: int  # answered by the request cache
    sent: int  # requests that reached the teacher
    failed: int
    traces_new: int
    completion_tokens: int
    seconds: float
    snapshot: int | None
    run_id: str


def _select_prompts(location: catalog_mod.CatalogLocation, cfg: BuildConfig) -> tuple[list[dict[str, Any]], set[str]]:
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(cfg.dataset)
        where, params = "dataset = ?", [cfg.dataset]
        if cfg.split_hint:
            where, params = where + " AND split_hint = ?", [*params, cfg.split_hint]
        limit = f"LIMIT {int(cfg.limit)}" if cfg.limit else ""
        prompts = cat.arrow(
            f"SELECT prompt_id, task, messages FROM prompts WHERE {where} ORDER BY prompt_id {limit}", params
        )
        if prompts.num_rows == 0:
            raise TracebankError(
                f"dataset {cfg.dataset!r} has no prompts"
                + (f" with split hint {cfg.split_hint!r}" if cfg.split_hint else "")
            )
        existing = cat.arrow("SELECT trace_id FROM traces WHERE dataset = ?", [cfg.dataset]).column(0).to_pylist()
    return prompts.to_pylist(), set(existing)


def _generate(teacher: Teacher, missing: list[Request], cache: RequestCache) -> dict[str, Response]:
    fresh: dict[str, Response] = {}
    tokens, started = 0, time.perf_counter()
    with ui.progress("generating", total=len(missing)) as bar:
        for response in teacher.generate(missing):
            cache.put(response)  # durable before it counts as done
            fresh[response.key] = response
            tokens += response.completion_tokens or 0
            rate = tokens / max(time.perf_counter() - started, 1e-9)
            bar.update(0, advance=1, status=f"{tokens} tok, {rate:.0f} tok/s")
    lost = [r.key for r in missing if r.key not in fresh]
    if lost:
        raise TracebankError(f"the {teacher.backend} backend returned no response for {len(lost)} requests")
    return fresh


def _trace_rows(
    todo: list[Request],
    responses: dict[str, Response],
    cfg: BuildConfig,
    backend: str,
    tasks: dict[str, str],
    run_id: str,
) -> pa.Table:
    now, rows = records.now(), []
    for request in todo:
        response = responses[request.key]
        task = get_task(tasks[request.prompt_id])
        rows.append({
            "trace_id": request.key, "prompt_id": request.prompt_id, "dataset": cfg.dataset, "policy": cfg.policy,
            "model": request.model, "backend": backend, "strategy": request.strategy,
            "sample_idx": request.sample_idx, "params": request.params.as_dict(), "request_key": request.key,
            "rationale": response.text, "answer": task.parse(response.text) if response.text else None,
            "finish_reason": "error" if response.error else response.finish_reason,
            "prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
            "cost_usd": 0.0 if backend in LOCAL_BACKENDS else None, "latency_s": response.latency_s,
            "build_run": run_id, "source_id": None, "meta": None, "created_at": now,
        })  # fmt: skip
    return records.to_table(rows, records.TRACES)


def build(location: catalog_mod.CatalogLocation, cfg: BuildConfig, teacher: Teacher | None = None) -> BuildResult:
    """Generate the traces ``cfg`` asks for that the catalog does not have yet.

    ``teacher`` replaces the configured backend (tests pass an in-process fake here).
    """
    started_at, started, run_id = records.now(), time.perf_counter(), provenance.new_run_id("build")
    backend = teacher.backend if teacher is not None else cfg.backend
    prompts, existing = _select_prompts(location, cfg)
    tasks = {p["prompt_id"]: p["task"] for p in prompts}
    requests = plan_requests(prompts, cfg.model, cfg.params(), cfg.samples, cfg.seed)
    todo = requests if cfg.refresh else [r for r in requests if r.key not in existing]
    catalog_mod.ensure_writable(location)
    with RequestCache(location.request_cache) as cache:
        cached = {} if cfg.refresh else cache.get_many(r.key for r in todo)
        missing = [r for r in todo if r.key not in cached]
        fresh = (
            _generate(teacher or make_teacher(cfg.backend, cfg.model, {"batch_size": cfg.batch_size}), missing, cache)
            if missing
            else {}
        )
    responses = {**cached, **fresh}
    traces = _trace_rows(todo, responses, cfg, backend, tasks, run_id)
    counters = {
        "prompts": len(prompts), "requests": len(requests), "existing": len(requests) - len(todo),
        "cached": len(cached), "sent": len(missing), "failed": sum(1 for r in responses.values() if r.error),
        "traces_new": traces.num_rows,
        "completion_tokens": sum(r.completion_tokens or 0 for r in responses.values()),
    }  # fmt: skip
    snapshot = None
    if traces.num_rows:
        message = f"build {traces.num_rows} {cfg.policy} traces for {cfg.dataset} with {cfg.model}"
        with catalog_mod.writing(location, message, {"stage": "build", "run_id": run_id}) as writer:
            if cfg.refresh:
                ids = pa.table({"trace_id": traces.column("trace_id")})
                writer.con.register("_refreshed", ids)
                writer.execute("DELETE FROM traces WHERE trace_id IN (SELECT trace_id FROM _refreshed)")
            writer.insert("traces", traces)
            writer.insert("runs", provenance.run_row(run_id, "build", cfg.dataset, started_at, asdict(cfg), counters))
        snapshot = writer.snapshot
    return BuildResult(cfg.dataset, seconds=time.perf_counter() - started, snapshot=snapshot, run_id=run_id, **counters)
