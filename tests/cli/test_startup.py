"""The command line starts without importing the stages: each command imports what it runs."""

import dataclasses
import importlib
import inspect
import subprocess
import sys

from tracebank.cli.summary import DESCRIBE
from tracebank.filters.runner import FILTERS

STAGES = ("builders", "filters", "curate", "train", "data_cards", "loop", "importer")


def test_starting_the_cli_imports_no_stage():
    code = "import sys, tracebank.cli.main; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    stages = [m for m in loaded if m.startswith("tracebank.") and m.split(".")[1] in STAGES]
    assert stages == [], "imported when the CLI starts (import them inside the command): " + ", ".join(stages)
    assert "torch" not in loaded and "transformers" not in loaded


def test_every_described_result_is_a_stage_result_class_and_is_described():
    for (module, name), line in DESCRIBE.items():
        cls = getattr(importlib.import_module(module), name)
        assert dataclasses.is_dataclass(cls) and cls.__qualname__ == name, (module, name)
        assert inspect.signature(line).parameters["result"].annotation == name, line.__name__


def test_the_filter_registry_imports_a_filter_only_when_asked_and_knows_each_by_its_name():
    code = (
        "import sys; from tracebank.filters.runner import ScoreConfig; ScoreConfig('d', ('links',)); "
        "print('\\n'.join(sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "tracebank.filters.safety.links" in loaded
    for unused in ("safety.pii", "safety.promotion", "diversity.semantic", "correctness.correctness"):
        assert f"tracebank.filters.{unused}" not in loaded
    for name in FILTERS:
        assert FILTERS[name].name == name
