"""``tracebank build --executor ray``: the requests a build sends, sharded across Ray tasks.

The driver plans, answers from the catalog and the request cache, and claims the keys to send,
as the local executor does (``builders.runner.build``). It then splits the requests into one
shard per Ray CPU. Each task makes its own teacher and writes every finished response to the
shared request cache the moment it arrives (one SQLite transaction per burst), so a worker killed
mid-run loses only its requests in flight: Ray runs the task again, and the new try first skips
the keys this build already cached. Once every shard is done, the driver reads the responses back
from the cache, streams the trace rows to the ``TraceSink`` and commits one snapshot, as now.

The request cache is a SQLite file beside the catalog: every worker must see that same file, which
holds on one machine; on a cluster, put the catalog on a filesystem all nodes mount. A backend's
``concurrency`` applies per worker. Cost and token caps are counted by one process, so they need
the local executor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracebank import ray_cluster, ui
from tracebank.builders.base import UNFINISHED, Request, Teacher, make_teacher
from tracebank.builders.cache import RequestCache
from tracebank.errors import TracebankError

if TYPE_CHECKING:
    from tracebank.builders.config import BuildConfig, Tally
    from tracebank.builders.sink import TraceSink

TASK_RETRIES = 3  # tries Ray gives a shard whose worker died, after the first


@dataclass
class ShardOutcome:
    """What one shard's last try did: counters and the requests it gave up on for now."""

    sent: int = 0
    retries: int = 0
    unfinished: dict[str, str | None] = field(default_factory=dict)  # key -> last error


def generate_on_ray(
    teacher: Teacher | None,
    requests: list[Request],
    cache: RequestCache,
    sink: TraceSink,
    row: Any,
    cfg: BuildConfig,
    tally: Tally,
) -> None:
    """Send ``requests`` from Ray tasks sharing ``cache``; store each finished response's trace row in ``sink``.

    ``teacher`` (tests) is shipped to every task; without one each task makes the configured backend.
    """
    started = time.time()
    with ray_cluster.session(cfg.ray_address) as ray:
        count = max(1, min(len(requests), int(ray.cluster_resources().get("CPU", 1))))
        shards = [requests[i::count] for i in range(count)]
        send = ray.remote(send_shard).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)
        pending = [send.remote(shard, cfg, teacher, str(cache.path), started) for shard in shards]
        outcomes = _wait(ray, pending, cache, len(requests), started)
    found = cache.get_many(r.key for r in requests)
    unfinished = {key: error for outcome in outcomes for key, error in outcome.unfinished.items()}
    for request in requests:
        if request.key in found and request.key not in unfinished:
            sink.add(row(request, found[request.key]))
            tally.add(found[request.key])
    tally.unfinished += len(unfinished)
    tally.retries += sum(outcome.retries for outcome in outcomes)
    tally.last_error = next((e for e in unfinished.values() if e), tally.last_error)
    tally.seconds_sending = time.time() - started


def _wait(ray: Any, pending: list[Any], cache: RequestCache, total: int, started: float) -> list[ShardOutcome]:
    """Every shard's outcome, with progress read from the cache; a shard's failure as a TracebankError."""
    refs, outcomes, failure = list(pending), [], None
    with ui.progress("generating on ray", total=total) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            for ref in done:
                try:
                    outcomes.append(ray.get(ref))
                except Exception as error:  # every shard settles before the build says why
                    failure = failure or error
            bar.update(0, completed=cache.count_since(started), status=f"{len(pending)}/{len(refs)} shards left")
    if failure is not None:
        cause = getattr(failure, "cause", None)
        why = cause if isinstance(cause, TracebankError) else f"a Ray task failed ({type(failure).__name__}: {failure})"
        raise TracebankError(
            f"{why}. The responses that finished are saved in the request cache: a rerun will not send them again"
        ) from None
    return outcomes


def send_shard(
    requests: list[Request], cfg: BuildConfig, teacher: Teacher | None, cache_path: str, started: float
) -> ShardOutcome:
    """Send one shard's requests (a Ray task); every finished response is cached before the next burst.

    A try after a dead worker skips the keys cached since ``started``: only the ones that were in
    flight, or never sent, go out again.
    """
    from tracebank.builders.runner import _bursts  # the runner imports this module lazily: no cycle at import

    outcome = ShardOutcome()
    with RequestCache(Path(cache_path)) as cache:
        done = cache.keys_since((r.key for r in requests), started)
        todo = [r for r in requests if r.key not in done]
        if not todo:
            return outcome
        teacher = teacher or make_teacher(cfg.backend, cfg.model, cfg.backend_options())
        waiting = getattr(teacher, "waiting", lambda: 0)
        for burst in _bursts(teacher.generate(todo), waiting):
            finished = [r for r in burst if r.finish_reason != UNFINISHED]
            cache.put_many(finished)  # durable before the next burst: a kill loses only what is in flight
            outcome.sent += len(burst)
            outcome.retries += sum(r.attempts - 1 for r in burst)
            outcome.unfinished.update({r.key: r.error for r in burst if r.finish_reason == UNFINISHED})
    return outcome
