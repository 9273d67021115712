"""bench/filter_cost.py runs at its smoke size, prints its goals last and writes what it measured."""

import json

import pytest

from tests.bench import run_smoke
from tests.docs_blocks import DOCS
from tracebank import sources
from tracebank.filters.runner import FILTERS

NEEDS_DATA = pytest.mark.skipif(
    not any((d / "gsm8k" / "labeled_solutions_dev.jsonl").is_file() for d in sources.data_dirs()),
    reason="needs ../shared/data/gsm8k/labeled_solutions_dev.jsonl",
)


@NEEDS_DATA
def test_smoke_run_measures_the_baseline_and_prints_the_goals_last(tmp_path):
    out = tmp_path / "costs.json"
    printed = run_smoke("filter_cost", "--dir", str(tmp_path / "w"), "--out", str(out))
    assert printed.rstrip().splitlines()[-3] == "== goals"
    measured = json.loads(out.read_text())["filters"]
    assert set(measured) == {"exact_dup", "correctness"}
    assert "correct" in measured["correctness"]["metrics"] and measured["correctness"]["traces"] == 16


def test_the_filter_reference_has_a_measured_cost_for_every_registered_filter():
    measured = json.loads((DOCS / "reference" / "filter_costs.json").read_text())
    assert set(measured["filters"]) == set(FILTERS), "run bench/filter_cost.py for the new or renamed filters"
    assert measured["date"] and "load average" not in measured["load"]
