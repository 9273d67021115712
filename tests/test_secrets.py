"""An API key never leaves the environment: not into the catalog, the request cache, run configs,
cards, exports, logs, error messages or tracebacks. A full pipeline runs with a sentinel key and
every file it wrote and every line it printed is searched for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders.conftest import start_stub
from tests.conftest import write_jsonl

pytestmark = pytest.mark.drill  # real processes, servers and faults: make test runs it, make test-fast does not

SENTINEL = "sk-tracebank-SENTINEL-7f3a9c2e41d8b6"


def _cli(args: list[str], home: Path, key: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRACEBANK_CATALOG": str(home), "OPENAI_API_KEY": key, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tracebank", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def _leaks(root: Path) -> list[str]:
    """Files under ``root`` whose bytes contain the key (or its distinctive half, e.g. in a repr cut short)."""
    needles = (SENTINEL.encode(), SENTINEL[-14:].encode())
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_a_sentinel_key_reaches_no_artifact_and_no_printed_line(tmp_path):
    home, out = tmp_path / "catalog", tmp_path / "export"
    rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(6)]
    write_jsonl(tmp_path / "q.jsonl", rows)
    policy = tmp_path / "keep-all.yaml"
    policy.write_text("name: keep-all\nrules: []\ndefault: keep\n")  # the stub's replies are not right answers
    printed = []
    with start_stub(api_key=SENTINEL) as stub:
        build = ["build", "q", "--backend", "openai", "--base-url", stub.base_url, "--model", "gpt-4o-mini"]
        steps = [
            ["import", str(tmp_path / "q.jsonl"), "--dataset", "q", "--map", "prompt=question,reference=answer"],
            build,
            ["score", "q"],
            ["curate", "q", "--policy", str(policy), "-m", "v1"],
            ["card", "q@v1"],
            ["publish", "q@v1", "--to", str(out)],
        ]
        for args in steps:
            result = _cli(args, home, SENTINEL, tmp_path)
            printed += [result.stdout, result.stderr]
            assert result.returncode == 0, (args, result.stderr[-2000:])
        # A wrong key: the server refuses it; the error names the variable, never the key.
        wrong = _cli([*build, "--refresh"], home, SENTINEL[::-1], tmp_path)
        printed += [wrong.stdout, wrong.stderr]
        assert wrong.returncode != 0 and "OPENAI_API_KEY" in wrong.stdout + wrong.stderr
        assert stub.stats()["statuses"].get("401", 0) >= 1
    for text in printed:
        assert SENTINEL not in text and SENTINEL[::-1] not in text and SENTINEL[-14:] not in text
    assert _leaks(tmp_path) == []
    assert any(home.rglob("*.parquet")) and any(out.rglob("*.parquet"))  # the artifacts searched exist
