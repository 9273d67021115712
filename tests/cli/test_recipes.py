import pytest

from tests import ROOT
from tests.conftest import write_jsonl
from tests.fakes import QUESTIONS
from tracebank import catalog
from tracebank.cli.recipes import load_recipe, run_recipe
from tracebank.errors import TracebankError

RECIPE = """
dataset: toy
vars: {{rows: 3}}
steps:
  - import:
      path: {path}
      map: {{prompt: question, reference: answer}}
      limit: ${{rows}}
"""


def _recipe(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_vars_are_substituted_with_their_types_and_overridable(tmp_path):
    data = write_jsonl(tmp_path / "q.jsonl", [{"question": q, "answer": f"#### {a}"} for q, a in QUESTIONS.items()])
    recipe = _recipe(tmp_path, RECIPE.format(path=data))
    location = catalog.locate(tmp_path / "cat")
    [(step, result)] = run_recipe(location, recipe, {"rows": 5})
    assert step.kind == "import" and result.prompts_new == 5


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("dataset: toy\nsteps: []\n", None, "non-empty list of steps"),
        ("dataset: toy\nsteps:\n  - explode: {}\n", None, "unknown step kind"),
        ('dataset: toy\nsteps:\n  - build: {samples: "${nope}"}\n', None, "unknown variable ${nope}"),
        ("dataset: toy\nsteps:\n  - build: {colour: red}\n", None, "unknown key 'colour'"),
        ("dataset: toy\nsteps:\n  - build: {samples: 0}\n", None, "samples must be at least 1"),
        ("dataset: toy\nsteps:\n  - import: {map: {prompt: q}}\n", None, "exactly one of source"),
        ("dataset: toy\nsteps:\n  - import: {source: mnist, map: {prompt: q}}\n", None, "unknown source 'mnist'"),
        ("dataset: toy\nsteps:\n  - curate: {policy: absent.yaml, message: m}\n", None, "no such policy file"),
        ("dataset: toy\nsteps:\n  - score: {filters: [vibes]}\n", None, "unknown filter"),
        ("dataset: toy\nsteps:\n  - score: {filters: [near_dup], options: {near_dup: {scope: all}}}\n", None, "scope"),
        ("dataset: toy\nvars: {a: 1}\nsteps:\n  - score: {}\n", {"b": 2}, "--set b: the recipe declares no such var"),
        ("dataset: toy\nsteps: [\n", None, "invalid YAML"),
        ("dataset: toy\nsteps:\n  - eval: {split: test}\n", None, "needs student"),
        ("dataset: toy\nsteps:\n  - train_orpo: {method: dpo}\n", None, "unknown key 'method'"),
        ("dataset: toy\nsteps:\n  - pairs: {rejected_from: [judge]}\n", None, "rejected_from"),
        ("dataset: toy\ncolour: red\nsteps:\n  - score: {}\n", None, "unknown key 'colour'"),
        ("dataset: toy\nsteps:\n  - train_sft: {precision: half}\n", None, "precision must be one of auto, fp32"),
        ("dataset: toy\nsteps:\n  - train_dpo: {precision: fp64}\n", None, "precision must be one of auto, fp32"),
        ("dataset: toy\nsteps:\n  - eval: {student: m, precision: int8}\n", None, "precision must be one of"),
        ("dataset: toy\nsteps:\n  - build: {options: {precision: half}}\n", None, "transformers precision must be"),
    ],
)
def test_every_step_is_validated_before_anything_runs(tmp_path, text, overrides, message):
    with pytest.raises(TracebankError, match=message.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")):
        load_recipe(_recipe(tmp_path, text), overrides)


def test_demo_recipe_loads(tmp_path):

    dataset, steps = load_recipe(ROOT / "recipes" / "demo.yaml")
    assert dataset == "gsm8k-demo"
    assert [s.kind for s in steps] == ["import", "import", "build", "score", "curate", "card", "train_sft"]


def test_preference_steps_default_to_the_latest_release(tmp_path):
    text = "dataset: toy\nsteps:\n  - pairs: {max_per_prompt: 2}\n  - train_orpo: {max_steps: 3}\n  - train_dpo: {}\n  - eval: {student: m, limit: 5}\n"
    _, steps = load_recipe(_recipe(tmp_path, text))
    assert [s.kind for s in steps] == ["pairs", "train_orpo", "train_dpo", "eval"]
    assert [s.summary for s in steps] == [
        "pair toy@latest",
        "ORPO smollm2-135m-instruct on toy@latest",
        "DPO smollm2-135m-instruct on toy@latest",
        "evaluate m",
    ]
