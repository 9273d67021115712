"""Tests of the benchmarks in bench/ (scripts, not a package): ``load`` imports one by name."""

import importlib
import sys

from tests import ROOT

BENCH = ROOT / "bench"


def load(name: str):
    """A bench module by dotted name (``poison_detection``, ``poison.corpus``), with bench/ on sys.path as
    when the script runs, so its helpers import the same way."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)
