"""The demo recipe end to end on a few prompts: real data, real SmolLM2, real DuckLake, real TRL."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tree_fingerprint
from tests.docs_blocks import run_by
from tracebank import catalog, sources
from tracebank.cli.main import yaml_value
from tracebank.cli.recipes import run_recipe

pytestmark = pytest.mark.slow
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
# The walkthrough's `tracebank run` block (docs/walkthrough/recipes.md), run here and not a second time there.
(BLOCK,) = run_by("tests/integration/test_demo.py::test_demo_recipe_end_to_end_then_rerun_sends_nothing")
(COMMAND,) = BLOCK.lines
SMALL = {name: yaml_value("--set", f"{name}={value}", value)
         for name, value in (arg.split("=", 1) for arg in shlex.split(COMMAND)[3:] if arg != "--set")}  # fmt: skip


def _have_data() -> bool:
    return any((d / "gsm8k" / "labeled_solutions_dev.jsonl").is_file() for d in sources.data_dirs())


@pytest.mark.timeout(1800)  # 374 s alone on an AVX2-only 2-core machine; past 900 s beside the rest of make test
@pytest.mark.skipif(not _have_data(), reason="needs gsm8k data under $TRACEBANK_DATA_DIR or ../shared/data")
def test_demo_recipe_end_to_end_then_rerun_sends_nothing(tmp_path):
    location = catalog.locate(tmp_path / "demo")
    results = {step.kind: result for step, result in run_recipe(location, RECIPE, SMALL)}
    assert shlex.split(COMMAND)[:3] == ["tracebank", "run", "recipes/demo.yaml"] and SMALL["prompts"] == 2
    assert results["build"].sent == 4 and results["build"].traces_new == 4
    assert results["curate"].created and results["curate"].version == 1
    assert results["card"].is_file() and "## Funnel" in results["card"].read_text()
    student = results["train_sft"].output_dir
    assert (student / "model.safetensors").is_file() and (student / "tracebank_train.json").is_file()
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM traces WHERE backend = 'transformers'") == 4
        assert cat.scalar("SELECT count(*) FROM traces WHERE backend = 'import'") == 400
        assert cat.scalar("SELECT count(*) FROM decisions") == 404
        kept_wrong = (
            "SELECT count(*) FROM curated c JOIN scores s USING (trace_id) WHERE s.metric = 'correct' AND s.value = 0"
        )
        assert cat.scalar(kept_wrong) == 0  # the policy keeps verified-correct traces only

    before = tree_fingerprint(location.home)
    command = [sys.executable, "-m", "tracebank", "run", str(RECIPE), "--catalog", str(location.home)]
    command += [arg for name, value in SMALL.items() for arg in ("--set", f"{name}={value}")]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "0 requests sent" in again.stdout and "no new release" in again.stdout and "already trained" in again.stdout
    changed = {
        k
        for k in set(before) | set(tree_fingerprint(location.home))
        if before.get(k) != tree_fingerprint(location.home).get(k)
    }
    assert changed <= {"write.lock", "requests.sqlite", "cards/gsm8k-demo/v1.md"}, changed
