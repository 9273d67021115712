"""``tracebank build``: plan requests, answer what the cache can, send the rest, store traces.

Order of work: traces already in the catalog are skipped; cached responses are reused; only the
remaining requests reach the teacher, and each response is cached the moment it arrives (so a
``kill -9`` loses only what was in flight). Trace rows stream to Parquet as they come (memory
stays flat) and land in the catalog as one commit at the end: with everything finished, when a
cost or token cap stops the run early, and when some requests stay unfinished after their
retries (then the build says so and exits non-zero; a rerun sends only those).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from itertools import islice
from typing import Any

import orjson
import pyarrow as pa

from tracebank import catalog as catalog_mod
from tracebank import hashing, provenance, records, ui
from tracebank.builders.base import (
    LOCAL_BACKENDS,
    UNFINISHED,
    Request,
    Response,
    Teacher,
    make_teacher,
)
from tracebank.builders.budget import Budget, Price, resolve_price
from tracebank.builders.cache import RequestCache
from tracebank.builders.config import FEWSHOT_POOL, BuildConfig, BuildIncomplete, BuildResult, Tally
from tracebank.builders.plans import Shaping, iter_requests, shaped
from tracebank.builders.sink import TraceSink, sweep
from tracebank.errors import TracebankError
from tracebank.tasks import get_task

# The build's API; its config and results (builders.config) are re-exported: callers name this module only.
__all__ = ["FEWSHOT_POOL", "BuildConfig", "BuildIncomplete", "BuildResult", "build", "trace_id"]


def trace_id(dataset: str, policy: str, key: str) -> str:
    """A trace's id: its request, in its dataset, by its policy (teacher and student traces of the
    same request coexist, and so do two datasets holding the same prompt)."""
    return hashing.digest("trace", dataset, policy, key)


def _select(location: catalog_mod.CatalogLocation, cfg: BuildConfig) -> tuple[pa.Table, dict[str, bool], list[Any]]:
    """The prompts to answer, the request keys already stored (-> failed?) and the few-shot pool."""
    with catalog_mod.Catalog(location) as cat:
        cat.require_dataset(cfg.dataset)
        where, params = "dataset = ?", [cfg.dataset]
        if cfg.split_hint:
            where, params = where + " AND split_hint = ?", [*params, cfg.split_hint]
        if cfg.prompt_ids is not None:
            where, params = where + " AND list_contains(?, prompt_id)", [*params, list(cfg.prompt_ids)]
        limit = f"LIMIT {int(cfg.limit)}" if cfg.limit else ""
        prompts = cat.arrow(
            f"SELECT prompt_id, task, messages FROM prompts WHERE {where} ORDER BY prompt_id {limit}", params
        )
        if prompts.num_rows == 0:
            raise TracebankError(
                f"dataset {cfg.dataset!r} has no prompts"
                + (f" with split hint {cfg.split_hint!r}" if cfg.split_hint else "")
                + (f" among the {len(cfg.prompt_ids)} prompt ids given" if cfg.prompt_ids is not None else "")
            )
        stored = cat.arrow(
            "SELECT request_key, bool_or(starts_with(coalesce(finish_reason, ''), 'error')) AS failed FROM traces "
            "WHERE dataset = ? AND policy = ? AND request_key IS NOT NULL GROUP BY request_key",
            [cfg.dataset, cfg.policy],
        )
        pool = []
        if "fewshot" in cfg.plan().axes():
            pool = cat.arrow(
                "SELECT prompt_id, task, messages, reference FROM prompts WHERE dataset = ? AND reference IS NOT NULL "
                f"ORDER BY coalesce(split_hint = 'train', false) DESC, prompt_id LIMIT {FEWSHOT_POOL}",
                [cfg.dataset],
            ).to_pylist()
        files = cat.arrow(f"SELECT data_file FROM ducklake_list_files('{catalog_mod.ALIAS}', 'traces')")
    sweep(location, set(files.column(0).to_pylist()))  # staged files of builds killed before they committed
    done = dict(zip(stored.column(0).to_pylist(), stored.column(1).to_pylist(), strict=True))
    return prompts, done, pool


def _plan(prompts: pa.Table, cfg: BuildConfig, pool: list[Any], shaping: Shaping | None = None) -> Iterator[Request]:
    """Every request of the build, made lazily from Arrow batches (the plan is run twice, never held)."""
    rows = (row for batch in prompts.to_batches(1024) for row in batch.to_pylist())
    requests = iter_requests(rows, cfg.model, cfg.params(), cfg.samples, cfg.seed, cfg.plan(), pool)
    return shaped(requests, shaping) if shaping is not None else requests


def _row(
    request: Request,
    response: Response,
    cfg: BuildConfig,
    backend: str,
    run_id: str,
    price: Price | None,
    now: Any,
    shaping: Shaping | None = None,
) -> dict[str, Any]:
    failed, reason = response.failed, response.finish_reason
    if failed and not reason.startswith("error"):
        reason = "error"  # cached before failures recorded their kind
    text = None if failed else response.text
    return {
        "trace_id": trace_id(cfg.dataset, cfg.policy, request.key), "prompt_id": request.prompt_id,
        "dataset": cfg.dataset, "policy": cfg.policy, "model": request.model, "backend": backend,
        "strategy": request.strategy, "sample_idx": request.sample_idx, "params": request.params.as_dict(),
        "request_key": request.key, "rationale": text, "answer": get_task(request.task).parse(text) if text else None,
        "finish_reason": reason,
        "prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
        "cost_usd": price.cost(response) if price is not None else None, "latency_s": response.latency_s,
        "build_run": run_id, "source_id": None, "meta": orjson.dumps({"error": response.error}).decode() if response.error else None,
        "created_at": now, "round": None, "hinted": None, "lineage": None,
        **(shaping.tags(request.prompt_id) if shaping is not None else {}),
    }  # fmt: skip


def build(
    location: catalog_mod.CatalogLocation,
    cfg: BuildConfig,
    teacher: Teacher | None = None,
    shaping: Shaping | None = None,
) -> BuildResult:
    """Generate the traces ``cfg`` asks for that the catalog does not have yet.

    ``teacher`` replaces the configured backend (tests pass an in-process fake here). ``shaping``
    adds closed-loop notes to some prompts' requests and tags their traces (builders.plans.Shaping). Raises
    :class:`BuildIncomplete` after committing what finished when some requests did not finish.
    """
    started_at, started, run_id = records.now(), time.perf_counter(), provenance.new_run_id("build")
    backend = teacher.backend if teacher is not None else cfg.backend
    prompts, done, pool = _select(location, cfg)
    price = resolve_price(cfg.model, backend in LOCAL_BACKENDS, cfg.price_in, cfg.price_out)
    budget = Budget(cfg.max_cost_usd, cfg.max_tokens, price)  # refuses a cost cap it cannot count, before any send
    catalog_mod.ensure_writable(location)
    tally, now = Tally(prompts=prompts.num_rows), records.now()
    row = functools.partial(_row, cfg=cfg, backend=backend, run_id=run_id, price=price, now=now, shaping=shaping)
    plan = functools.partial(_plan, prompts, cfg, pool, shaping)
    with RequestCache(location.request_cache) as cache, TraceSink(location, run_id) as sink:
        missing = _answer_from_cache(plan(), done, cache, sink, row, cfg, tally)
        pending, to_send = set(missing), set()
        try:
            while pending and not budget.stopped:  # another build may hold some keys: theirs to send
                to_send, held = _claim(cache, pending, run_id, cfg, tally, sink, row, plan)
                if to_send and cfg.executor == "ray":  # imported here: Ray loads only when a run asks for it
                    from tracebank.builders.ray_build import generate_on_ray

                    catalog_mod.warm_up(location)
                    generate_on_ray(teacher, list(_sendable(plan(), set(to_send), {})), cache, sink, row, cfg, tally)
                elif to_send:
                    teacher = teacher or make_teacher(cfg.backend, cfg.model, cfg.backend_options())
                    inflight: dict[str, Request] = {}
                    sendable = _sendable(plan(), set(to_send), inflight)
                    catalog_mod.warm_up(location)  # the commit's connection loads while the teacher works
                    _generate(teacher, sendable, len(to_send), inflight, cache, sink, row, budget, tally)
                pending = _wait_for_others(cache, held, run_id) if held else set()
        finally:
            cache.release(run_id)
        tally.unsent = len(missing) - tally.fresh - tally.unfinished - tally.shared
        tally.cost_usd = budget.cost_usd if price is not None else None
        snapshot = _commit(location, cfg, sink, run_id, started_at, tally, teacher) if sink.rows else None
    counts = {k: v for k, v in asdict(tally).items() if k != "fresh"}
    result = BuildResult(cfg.dataset, seconds=time.perf_counter() - started, snapshot=snapshot, run_id=run_id,
                         stopped=budget.stopped, traces_new=sink.rows, sent=tally.sent, **counts)  # fmt: skip
    if tally.unfinished:
        raise BuildIncomplete(
            f"{tally.unfinished} requests did not finish (last error: {tally.last_error}); the "
            f"{sink.rows} new traces that did are committed"
            + (f" (snapshot {snapshot})" if snapshot is not None else "")
            + ": run the same build again to send only the unfinished ones",
            result,
        )
    return result


def _commit(
    location: catalog_mod.CatalogLocation,
    cfg: BuildConfig,
    sink: TraceSink,
    run_id: str,
    started_at: Any,
    tally: Tally,
    teacher: Teacher | None,
) -> int | None:
    """The staged traces and the run's row, as one snapshot."""
    message = f"build {sink.rows} {cfg.policy} traces for {cfg.dataset} with {cfg.model}"
    counters = {k: v for k, v in asdict(tally).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    counters.update({f"teacher_{k}": v for k, v in getattr(teacher, "stats", {}).items()})
    counters.update(traces_new=sink.rows, sent=tally.sent)
    with catalog_mod.writing(location, message, {"stage": "build", "run_id": run_id}) as writer:
        if cfg.refresh or cfg.retry_failed:
            _delete_replaced(writer, sink, cfg)
        # Planned before the lock: a build that overlapped this one may have committed some of these.
        counters["traces_already_stored"] = sink.drop_stored(writer, cfg.dataset)
        counters["traces_new"] = sink.rows
        sink.register(writer)
        writer.insert("runs", provenance.run_row(run_id, "build", cfg.dataset, started_at, asdict(cfg), counters))
    sink.committed = True
    return writer.snapshot


def _answer_from_cache(
    requests: Iterator[Request],
    done: dict[str, bool],
    cache: RequestCache,
    sink: TraceSink,
    row: Any,
    cfg: BuildConfig,
    tally: Tally,
) -> set[str]:
    """Skip what the catalog has, write what the cache answers (chunk by chunk); return the keys left."""
    missing: set[str] = set()
    while chunk := list(islice(requests, 2000)):
        tally.requests += len(chunk)
        todo = [r for r in chunk if cfg.refresh or r.key not in done or (cfg.retry_failed and done[r.key])]
        tally.existing += len(chunk) - len(todo)
        found = {} if cfg.refresh else cache.get_many(r.key for r in todo)
        for request in todo:
            response = found.get(request.key)
            if response is None or (cfg.retry_failed and response.failed):
                missing.add(request.key)
            else:
                sink.add(row(request, response))
                tally.cached += 1
    return missing


def _usable(response: Response | None, cfg: BuildConfig) -> bool:
    """A cached response this build may store instead of sending the request again."""
    return response is not None and not (cfg.retry_failed and response.failed)


def _claim(
    cache: RequestCache,
    keys: set[str],
    run_id: str,
    cfg: BuildConfig,
    tally: Tally,
    sink: TraceSink,
    row: Any,
    plan: Callable[[], Iterator[Request]],
) -> tuple[set[str], dict[str, str]]:
    """Claim ``keys``; store those another build answered meanwhile. Returns (keys to send, {key: holder})."""
    held = cache.claim(keys, run_id)
    mine = keys - held.keys()
    # A build that finished since this one looked: its responses are in the cache now.
    found = {} if cfg.refresh else {k: r for k, r in cache.get_many(mine).items() if _usable(r, cfg)}
    if found:
        for request in plan():
            if request.key in found:
                sink.add(row(request, found[request.key]))
        tally.shared += len(found)
    return mine - found.keys(), held


def _wait_for_others(cache: RequestCache, held: dict[str, str], run_id: str, poll_s: float = 0.5) -> set[str]:
    """Wait while other builds send the keys they hold; returns the keys to claim again.

    A key comes back once its holder has ended (finished, failed or was killed): the next claim
    then finds its response in the cache, or takes the key over and sends it.
    """
    pending = set(held)
    with ui.progress("waiting for requests another build is sending", total=len(pending)) as bar:
        while len(still := cache.holders(pending, run_id)) == len(pending):
            bar.update(0, status=f"held by {', '.join(sorted(set(still.values())))}")
            time.sleep(poll_s)
    return pending


def _sendable(requests: Iterator[Request], missing: set[str], inflight: dict[str, Request]) -> Iterator[Request]:
    """The plan again, keeping only the requests to send (each once); each is noted in flight as it goes."""
    for request in requests:
        if not missing:
            return
        if request.key in missing:
            missing.discard(request.key)
            inflight[request.key] = request
            yield request


def _generate(
    teacher: Teacher,
    requests: Iterator[Request],
    total: int,
    inflight: dict[str, Request],
    cache: RequestCache,
    sink: TraceSink,
    row: Any,
    budget: Budget,
    tally: Tally,
) -> None:
    started, shown = time.perf_counter(), 0.0
    waiting = getattr(teacher, "waiting", lambda: 0)
    with ui.progress("generating", total=total) as bar:
        try:
            for burst in _bursts(teacher.generate(budget.gate(requests)), waiting):
                finished = []
                for response in burst:
                    tally.retries += response.attempts - 1
                    if response.finish_reason == UNFINISHED:
                        inflight.pop(response.key)
                        tally.unfinished += 1
                        tally.last_error = response.error
                        budget.abandon()
                    else:
                        finished.append(response)
                cache.put_many(finished)  # durable before they count as done
                for response in finished:
                    budget.charge(response)
                    sink.add(row(inflight.pop(response.key), response))
                    tally.add(response)
                if (now := time.perf_counter()) - shown > 0.25:
                    shown = now
                    bar.update(0, completed=tally.sent, status=_status(tally, budget, now - started))
        except TracebankError as error:
            raise TracebankError(
                f"{error}. The {tally.fresh} responses that finished are saved in the request cache: "
                "a rerun will not send them again"
            ) from None
        tally.seconds_sending = time.perf_counter() - started
        bar.update(0, completed=tally.sent, status=_status(tally, budget, tally.seconds_sending))


def _bursts(responses: Iterator[Response], waiting: Any, most: int = 256) -> Iterator[list[Response]]:
    """Each response with those already waiting behind it (up to ``most``): one cache transaction each.

    An error the teacher raises while a burst is gathered comes after that burst is handed on,
    so no finished response is dropped on the way.
    """
    responses = iter(responses)
    for first in responses:
        burst = [first]
        while len(burst) < most and waiting():
            try:
                burst.append(next(responses))
            except StopIteration:
                break
            except BaseException:
                yield burst
                raise
        yield burst


def _status(tally: Tally, budget: Budget, seconds: float) -> str:
    seconds = max(seconds, 1e-9)
    tokens = tally.prompt_tokens + tally.completion_tokens
    cost = f"${budget.cost_usd:.4f}" if budget.price is not None else "$?"
    return (f"{tally.fresh / seconds:.0f} req/s · {tally.completion_tokens / seconds:.0f} tok/s · {tokens} tok · "
            f"{cost} · {tally.retries} retries · {tally.failed} failed")  # fmt: skip


def _delete_replaced(writer: catalog_mod.Writer, sink: TraceSink, cfg: BuildConfig) -> None:
    """--refresh / --retry-failed: the new traces replace the stored ones of the same requests."""
    files = [str(p) for p in sink.close()]
    writer.execute(
        "DELETE FROM traces WHERE dataset = ? AND policy = ? AND request_key IN "
        "(SELECT request_key FROM read_parquet(?))",
        [cfg.dataset, cfg.policy, files],
    )
