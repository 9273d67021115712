"""The docs' "Building from a teacher server" block runs as written (the stub on a free port)."""

import os
import shlex
import socket
import subprocess
import sys

from tests.builders.conftest import import_questions
from tests.docs_blocks import run_by
from tracebank import catalog


def _block():
    (block,) = run_by("tests/builders/test_docs_server.py::test_the_stub_server_block_runs_as_written")
    return block.lines


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_stub_server_block_runs_as_written(tmp_path):
    server_line, build_line = _block()
    port = str(_free_port())
    assert server_line.startswith("python -m tracebank.builders.stub_server --port 8000") and server_line.endswith("&")
    server_args = shlex.split(server_line.rstrip("&"))[1:]
    server_args[server_args.index("--port") + 1] = port
    location = catalog.locate(tmp_path / "catalog")
    import_questions(location, tmp_path / "q.jsonl", [f"What is {i} times 3?" for i in range(25)], dataset="gsm8k")
    server = subprocess.Popen([sys.executable, *server_args], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("listening on")
        args = shlex.split(build_line.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
        assert args[0] == "tracebank"
        env = {**os.environ, "TRACEBANK_CATALOG": str(location.home)}
        done = subprocess.run(
            [sys.executable, "-m", "tracebank", *args[1:]], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        assert "built 80 traces for 20 prompts" in done.stdout, done.stdout
    finally:
        server.terminate()
        server.wait()
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM traces WHERE backend = 'openai' AND cost_usd > 0") == 80
