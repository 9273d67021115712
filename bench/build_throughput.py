"""Builder throughput against a loopback stub teacher, next to a bare aiohttp client on the same N.

    .venv/bin/python bench/build_throughput.py                      # c=256, 200 ms, N=5,000
    .venv/bin/python bench/build_throughput.py --faults             # + 5% 429, 2% 500, 1% dropped
    .venv/bin/python bench/build_throughput.py --n 100000 --latency 0.01 --skip-baseline   # memory
    .venv/bin/python bench/build_throughput.py --smoke              # N=200, c=32, 10 ms, with faults

The stub server runs in its own process. The baseline and the builder each run in a fresh
process, so CPU time and peak RSS are each their own. The builder's time is the whole
``build()`` call: planning, cache lookups, every response made durable in the request cache,
Parquet streaming and the DuckLake commit. Targets (2 cores, c=256, 200 ms, N=5,000): builder
>= 0.9x baseline and >= 700 req/s, <= 1 ms CPU per request; with faults every request completes
exactly once. Prints ratios, then these goals last (exit 1 on a miss; shared machines are noisy,
so rerun a miss before believing it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from machine import goals_table

MODEL = "stub-teacher"


def _question(i: int) -> str:
    return f"Question {i}: a farmer has {i} cows and buys 3 more. How many cows does the farmer have now?"


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def run_baseline(url: str, n: int, concurrency: int) -> dict[str, float]:
    """A bare aiohttp client: the same bodies, a semaphore, read and parse each reply. No retries."""
    import aiohttp
    import orjson

    bodies = [
        orjson.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": _question(i) + " (baseline)"}],
                "temperature": 0.7,
                "top_p": 0.95,
                "max_tokens": 256,
                "seed": 0,
            }
        )
        for i in range(n)
    ]

    async def main() -> int:
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(body: bytes) -> int:
                async with gate, session.post(url + "/chat/completions", data=body,
                                              headers={"Content-Type": "application/json"}) as reply:  # fmt: skip
                    data = orjson.loads(await reply.read())
                    return len(data.get("choices", ()))

            return sum(await asyncio.gather(*(one(b) for b in bodies)))

    before, started = _usage(), time.perf_counter()
    answered = asyncio.run(main())
    seconds, after = time.perf_counter() - started, _usage()
    return {"seconds": seconds, "cpu_s": after["cpu_s"] - before["cpu_s"], "peak_rss_mb": after["peak_rss_mb"],
            "answered": answered}  # fmt: skip


def run_sdk(url: str, n: int, concurrency: int) -> dict[str, float]:
    """The openai SDK with its default (httpx) transport, the same bodies and concurrency, no retries."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="stub", max_retries=0)

    async def main() -> int:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with gate:
                reply = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": _question(i) + " (sdk)"}],
                    temperature=0.7, top_p=0.95, max_tokens=256, seed=0,
                )  # fmt: skip
                return len(reply.choices)

        return sum(await asyncio.gather(*(one(i) for i in range(n))))

    before, started = _usage(), time.perf_counter()
    answered = asyncio.run(main())
    seconds, after = time.perf_counter() - started, _usage()
    return {"seconds": seconds, "cpu_s": after["cpu_s"] - before["cpu_s"], "peak_rss_mb": after["peak_rss_mb"],
            "answered": answered}  # fmt: skip


def prepare(n: int) -> str:
    """A catalog with N text prompts (in its own process, so the build's peak RSS is its own)."""
    import orjson

    from tracebank import catalog
    from tracebank.importer import ColumnMap, ImportConfig, import_data

    work = Path(tempfile.mkdtemp(prefix="tracebank-bench-"))
    source = work / "prompts.jsonl"
    source.write_bytes(b"".join(orjson.dumps({"question": _question(i)}) + b"\n" for i in range(n)))
    location = catalog.locate(work / "catalog")
    import_data(location, ImportConfig(str(source), "bench", ColumnMap.parse("prompt=question"), task="text"))
    return str(location.home)


def run_builder(url: str, n: int, concurrency: int, home: str) -> dict[str, float]:
    # Process start-up, outside the clock as the baseline's imports are: aiohttp (0.2 s), and pandas
    # (0.2 s), which duckdb imports the first time a query binds a parameter.
    import aiohttp  # noqa: F401
    import pandas  # noqa: F401

    from tracebank import catalog
    from tracebank.builders.cache import RequestCache
    from tracebank.builders.runner import BuildConfig, build

    location = catalog.locate(home)
    options = {"base_url": url, "concurrency": concurrency, "backoff_s": 0.05, "max_backoff_s": 1.0}
    cfg = BuildConfig("bench", backend="openai", model=MODEL, samples=1, max_new_tokens=256, options=options)
    before, started = _usage(), time.perf_counter()
    result = build(location, cfg)
    seconds, after = time.perf_counter() - started, _usage()
    with catalog.Catalog(location) as cat:
        traces, distinct = cat.con.execute("SELECT count(*), count(DISTINCT request_key) FROM traces").fetchone()
    with RequestCache(location.request_cache) as cache:
        cached = len(cache)
    return {"seconds": seconds, "cpu_s": after["cpu_s"] - before["cpu_s"], "peak_rss_mb": after["peak_rss_mb"],
            "traces": traces, "distinct": distinct, "cache_rows": cached, "retries": result.retries,
            "sent": result.sent, "seconds_sending": result.seconds_sending}  # fmt: skip


def _role(role: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--role", role, "--url", url, "--n", str(args.n),
               "--concurrency", str(args.concurrency)]  # fmt: skip
    if role == "builder":
        command += ["--home", _role("prepare", url, args)["home"]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{role} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stub(args: argparse.Namespace, faults: bool) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "tracebank.builders.stub_server", "--port", "0", "--latency", str(args.latency)]
    if faults:
        command += ["--p429", "0.05", "--p500", "0.02", "--pdrop", "0.01", "--retry-after", "0.2", "--seed", "1"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"the stub server did not start: {line!r}")
    return server, line.split()[-1]


def _stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=30) as reply:
        return json.loads(reply.read())


def _line(name: str, n: int, run: dict[str, float]) -> str:
    rate = n / run["seconds"]
    return (f"{name:<22} {rate:8.0f} req/s   {run['seconds']:7.2f} s   "
            f"{1000 * run['cpu_s'] / n:6.3f} ms CPU/req   {run['peak_rss_mb']:7.0f} MB peak RSS")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--faults", action="store_true", help="also run the builder with 5%% 429, 2%% 500, 1%% drops")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--sdk", action="store_true", help="also time the openai SDK's default transport (pip install openai)"
    )
    parser.add_argument("--role", choices=("baseline", "builder", "prepare", "sdk"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="N=200, concurrency 32, 10 ms, with faults")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.concurrency, args.latency, args.faults = 200, 32, 0.01, True
    if args.role == "prepare":
        print(json.dumps({"home": prepare(args.n)}))
        return 0
    if args.role:
        runners = {"baseline": run_baseline, "sdk": run_sdk}
        if args.role in runners:
            print(json.dumps(runners[args.role](args.url, args.n, args.concurrency)))
        else:
            print(json.dumps(run_builder(args.url, args.n, args.concurrency, args.home)))
        return 0

    print(f"N={args.n} concurrency={args.concurrency} latency={args.latency * 1000:.0f} ms, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    server, url = _stub(args, faults=False)
    try:
        baseline = None if args.skip_baseline else _role("baseline", url, args)
        builder = _role("builder", url, args)
        sdk = _role("sdk", url, args) if args.sdk else None
    finally:
        server.terminate()
        server.wait()
    if baseline:
        print(_line("bare aiohttp baseline", args.n, baseline))
    if sdk:
        print(_line("openai SDK (httpx)", args.n, sdk))
    print(_line("tracebank build", args.n, builder))
    print(
        f"  of which sending     {args.n / builder['seconds_sending']:8.0f} req/s   {builder['seconds_sending']:7.2f} s"
    )
    if baseline:
        print(
            f"builder / baseline     {baseline['seconds'] / builder['seconds']:8.2f}x end to end (catalog open and "
            f"commit included), {baseline['seconds'] / builder['seconds_sending']:.2f}x while sending"
        )
    print(f"builder traces {builder['traces']}, distinct {builder['distinct']}, cache rows {builder['cache_rows']}")
    goals = [(f"every request stored once ({builder['distinct']} of {args.n})",
              builder["traces"] == builder["distinct"] == args.n)]  # fmt: skip
    rate, cpu_ms = args.n / builder["seconds"], 1000 * builder["cpu_s"] / args.n
    goals += [
        (f"builder >= 700 req/s ({rate:.0f})", rate >= 700),
        (f"<= 1 ms CPU per request ({cpu_ms:.3f})", cpu_ms <= 1),
    ]
    if baseline:
        ratio = baseline["seconds"] / builder["seconds"]
        goals.append((f"builder >= 0.9x the bare aiohttp baseline ({ratio:.2f}x)", ratio >= 0.9))
    if args.faults:
        server, url = _stub(args, faults=True)
        try:
            faulty = _role("builder", url, args)
            stats = _stats(url)
        finally:
            server.terminate()
            server.wait()
        print(_line("build with faults", args.n, faulty))
        print(f"faults: server statuses {stats['statuses']}, client retries {faulty['retries']}")
        lost = args.n - faulty["distinct"]
        duplicates = faulty["traces"] - faulty["distinct"] + stats["answered_twice"]
        print(f"exactly once: {faulty['traces']} traces, {faulty['distinct']} distinct, {faulty['cache_rows']} "
              f"cached; {lost} lost, {duplicates} duplicates (server answered {stats['answered_twice']} bodies twice)")  # fmt: skip
        goals.append((f"with faults every request completes exactly once ({lost} lost, {duplicates} twice)",
                       lost == 0 and duplicates == 0))  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    targets = "targets for N=5,000, c=256, 200 ms on 2 cores" if args.smoke else ""
    return goals_table(goals, targets, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
