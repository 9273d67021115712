"""Tests of the benchmarks in bench/ (scripts, not a package): ``load`` imports one by name."""

import importlib
import subprocess
import sys

from tests import ROOT

BENCH = ROOT / "bench"


def load(name: str):
    """A bench module by dotted name (``poison_detection``, ``poison.corpus``), with bench/ on sys.path as
    when the script runs, so its helpers import the same way."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def run_smoke(name: str, *args: str, timeout: int = 600) -> str:
    """Run ``bench/NAME.py --smoke ARGS`` as a user does; it must exit 0 and end with its goals table
    (``== goals``, then one ``met``/``MISS`` line per goal). Returns what it printed."""
    run = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke", *args], capture_output=True,
                         text=True, timeout=timeout)  # fmt: skip
    assert run.returncode == 0, f"{name} exited {run.returncode}:\n{run.stderr[-3000:]}"
    lines = run.stdout.rstrip().splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("== goals")]
    assert heads, f"{name} printed no goals table:\n{run.stdout[-2000:]}"
    table = [line for line in lines[heads[-1] + 1 :] if not line.startswith("(smoke")]
    assert table and all(line[:4] in ("met ", "MISS") for line in table), f"{name}: not a goals table: {table}"
    return run.stdout
