"""Symbolic answer equivalence with math-verify, in worker processes.

math-verify bounds its parsing and comparison time with ``signal.alarm``, which works only in a
process's main thread; sympy can also run for a very long time on hostile input. So every check
runs in a worker process (``python -m tracebank.tasks.symbolic``, one check at a time in its main
thread), is cached by a hash of its inputs (:mod:`tracebank.verdict_cache`), and a worker stuck
past a hard deadline is killed and replaced. Workers are plain subprocesses rather than a
multiprocessing pool: nothing re-imports the caller's ``__main__``, so this works the same from a
script, a notebook or ``python -``.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from importlib.metadata import version

from tracebank import hashing, verdict_cache

TIMEOUT_S = 5  # math-verify's own limit per parse and per comparison (whole seconds: signal.alarm)
CHECKER = f"math-verify=={version('math-verify')};tracebank-1"  # in every cache key
WORKER_MEMORY = 4 << 30  # address space of a worker process


def _as_latex(answer: str) -> str:
    """math-verify extracts LaTeX between delimiters: a bare "\\frac12" or "x^2" needs them."""
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


def check(gold: str, answer: str, timeout_s: int = TIMEOUT_S) -> tuple[int, str]:
    """(correct, reason) for one pair: correct/mismatch, parse_error or timeout. Main thread only."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException
    from sympy import Basic, MatrixBase

    try:
        parsed_gold = parse(_as_latex(gold), parsing_timeout=timeout_s, raise_on_error=True)
        parsed_answer = parse(_as_latex(answer), parsing_timeout=timeout_s, raise_on_error=True)
        same = bool(parsed_gold and parsed_answer) and verify(
            parsed_gold, parsed_answer, timeout_seconds=timeout_s, raise_on_error=True
        )
    except TimeoutException:
        return 0, "timeout"
    except Exception:  # math-verify and sympy raise many types for unparsable input
        return 0, "parse_error"
    if same:
        return 1, "correct"
    parsed = all(any(isinstance(x, (Basic, MatrixBase)) for x in side) for side in (parsed_gold, parsed_answer))
    return 0, "mismatch" if parsed else "parse_error"


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracebank.tasks.symbolic"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.job: int | None = None
        self.deadline = 0.0

    def send(self, job: int, gold: str, answer: str, timeout_s: int, hard_limit: float) -> None:
        self.job, self.deadline = job, time.monotonic() + hard_limit
        self.proc.stdin.write(json.dumps([gold, answer, timeout_s]).encode() + b"\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


_workers: list[_Worker] = []
_lock = threading.Lock()  # one batch at a time drives the workers


def _close() -> None:
    while _workers:
        _workers.pop().stop()


def _run(pairs: list[tuple[str, str]], timeout_s: int) -> list[tuple[int, str]]:
    """Check ``pairs`` on up to one worker per core; a worker past the hard deadline is replaced."""
    if not _workers:
        atexit.register(_close)
    while len(_workers) < min(len(pairs), max(1, len(os.sched_getaffinity(0)))):
        _workers.append(_Worker())
    hard_limit = 8 * timeout_s + 10  # two parses and up to four comparisons, each bounded by timeout_s
    queue, results = deque(enumerate(pairs)), [(0, "timeout")] * len(pairs)
    while queue or any(w.job is not None for w in _workers):
        for worker in _workers:
            if worker.job is None and queue:
                job, (gold, answer) = queue.popleft()
                worker.send(job, gold, answer, timeout_s, hard_limit)
        busy = [w for w in _workers if w.job is not None]
        wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], wait)
        for worker in busy:
            line = worker.proc.stdout.readline() if worker.proc.stdout in ready else None  # type: ignore[union-attr]
            if line:
                results[worker.job] = tuple(json.loads(line))  # type: ignore[index,assignment]
                worker.job = None
            elif line == b"" or time.monotonic() >= worker.deadline:  # died, or stuck in C past its alarm
                worker.stop()
                _workers[_workers.index(worker)] = _Worker()
    return results


def check_many(pairs: Sequence[tuple[str, str]], timeout_s: int = TIMEOUT_S) -> list[tuple[int, str]]:
    """(correct, reason) per (gold, answer) pair; cached results are reused, the rest run in the pool."""
    if not pairs:
        return []
    keys = [hashing.digest("math-verify", CHECKER, timeout_s, gold, answer) for gold, answer in pairs]
    known = {key: (value["correct"], value["reason"]) for key, value in verdict_cache.get_many(keys).items()}
    todo = {key: pair for key, pair in zip(keys, pairs, strict=True) if key not in known}
    if todo:
        with _lock:
            computed = dict(zip(todo, _run(list(todo.values()), timeout_s), strict=True))
        verdict_cache.put_many({key: {"correct": c, "reason": r} for key, (c, r) in computed.items()})
        known.update(computed)
    return [known[key] for key in keys]


def main() -> None:
    """Worker loop: one JSON [gold, answer, timeout_s] per line in, one [correct, reason] per line out."""
    import resource

    import math_verify  # noqa: F401 (import once, before the first check)

    # sympy can be asked for a huge exact number: a MemoryError (a parse_error) rather than swapping
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))

    for line in sys.stdin:
        gold, answer, timeout_s = json.loads(line)
        sys.stdout.write(json.dumps(check(gold, answer, timeout_s)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
