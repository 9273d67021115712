"""Ray for ``--executor ray``: join a running cluster, or start a loopback-only one for one run.

Ray is imported here only, inside :func:`session`, so nothing loads it unless a run asks for
``executor="ray"``. Which Ray a run uses, in order: one already initialised in this process (a
test, a notebook), the cluster at ``ray_address`` or ``$RAY_ADDRESS`` (``auto``, ``HOST:6379``),
else a single-node Ray started for the run on 127.0.0.1 (no dashboard, no usage stats, its temp
dir and logs under Ray's own ``/tmp/ray``) and shut down when the run ends. Workers on a cluster
must have tracebank installed and see the catalog's directory (shared storage).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracebank.errors import TracebankError

EXECUTORS = ("local", "ray")
ADDRESS_ENV = "RAY_ADDRESS"


def check_executor(executor: str, ray_address: str | None) -> None:
    """The executor settings of a stage's config, or a TracebankError that says what to give."""
    if executor not in EXECUTORS:
        raise TracebankError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if ray_address is not None and (executor != "ray" or not str(ray_address).strip()):
        raise TracebankError("ray_address is the Ray cluster of --executor ray (e.g. auto or HOST:6379)")


@contextmanager
def session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, initialised (see the module docstring); shuts down only a Ray it started."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # read when ray starts: no telemetry from this run
    import ray
    import ray.data

    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get(ADDRESS_ENV) or None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            cpus = num_cpus or os.cpu_count() or 1
            ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise TracebankError(f"could not start {where}: {error}") from None
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
