import json

import pytest

from tracebank import verdict_cache
from tracebank.tasks import code as code_task
from tracebank.tasks import get_task
from tracebank.tasks.code import RULES, extract_code, parse_reference, solution_source

CODE = get_task("code")
PROMPT = 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n'
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
REFERENCE = json.dumps({"prompt": PROMPT, "test": TESTS, "entry_point": "add"})
WHOLE = "def add(a, b):\n    return a + b\n"

EXTRACTION_CASES = [
    # fenced: a ```python block, the last one that defines something, an unclosed one
    (f"Here you go:\n```python\n{WHOLE}```\nDone.", WHOLE, "fenced"),
    (f"```py\n{WHOLE}```", WHOLE, "fenced"),
    (f"```python\nprint(1)\n```\n```\n{WHOLE}```\n```python\nadd(1, 2)\n```", WHOLE, "fenced"),
    (f"```python\n{WHOLE}", WHOLE, "fenced"),  # a reply cut off before the closing fence
    # completion: a body continuing the signature, cut at top-level code that is not a definition
    ("    return a + b\n\n\nprint(add(1, 2))\n", "    return a + b\n", "completion"),
    ("    return helper(a) + b\n\ndef helper(x):\n    return x\n", None, "completion"),
    # program: code without a fence after prose, trailing prose dropped
    (f"Sure! Here it is.\n{WHOLE}\nThis adds the numbers.", WHOLE, "program"),
    ("import math\ndef add(a, b):\n    return math.fsum([a, b])\n", None, "program"),
]


@pytest.mark.parametrize(("text", "code", "rule"), EXTRACTION_CASES)
def test_extraction_rules(text, code, rule):
    found, found_rule = extract_code(text)
    assert found_rule == rule
    assert found == (code if code is not None else text)


def test_every_rule_has_a_case_above():
    assert {name for name, _ in RULES} == {rule for _, _, rule in EXTRACTION_CASES}


@pytest.mark.parametrize("text", [None, "", "   ", "I am not sure how to do this."])
def test_no_code(text):
    assert extract_code(text) == (None, None)


def test_references_are_json_test_specs_or_plain_scripts():
    spec = parse_reference(REFERENCE)
    assert (spec.entry_point, spec.prompt, spec.test) == ("add", PROMPT, TESTS)
    script = parse_reference("assert add(1, 2) == 3\n")
    assert script.entry_point is None and script.test.startswith("assert")
    assert parse_reference(None) is None and parse_reference(" ") is None
    assert parse_reference(json.dumps({"entry_point": "add"})) is None  # no tests
    for checks_nothing in (
        "# nothing\n",
        json.dumps({"test": "  ", "entry_point": "add"}),
        json.dumps({"test": "# x"}),
    ):
        assert parse_reference(checks_nothing) is None, checks_nothing  # no reference, never "correct"


def test_a_completion_continues_the_prompt_and_a_whole_function_follows_it():
    spec = parse_reference(REFERENCE)
    assert solution_source("    return a + b\n", spec) == PROMPT + "    return a + b\n"
    assert solution_source(WHOLE, spec).endswith(WHOLE) and solution_source(WHOLE, spec).startswith(PROMPT.rstrip())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"```python\n{WHOLE}```", "correct"),
        ("    return a + b\n", "correct"),
        ("    return a - b\n", "assertion_failed"),
        ("    return a + b + undefined_name\n", "runtime_error"),
        ("    return (a +\n", "parse_error"),
        ("I don't know.", "no_answer"),
    ],
)
def test_verdicts(text, reason):
    verdict = CODE.verify(CODE.parse(text), REFERENCE)
    assert verdict.reason == reason and verdict.correct == int(reason == "correct")


def test_the_detail_names_the_first_failing_assertion():
    verdict = CODE.verify("    return a * b if a > 0 else a + b\n", REFERENCE)
    assert verdict.reason == "assertion_failed" and verdict.detail == "assert candidate(1, 2) == 3"


def test_a_plain_test_script_runs_after_the_code():
    script = "assert add(2, 2) == 4\nassert add(0, 0) == 0\n"
    assert CODE.is_correct(WHOLE, script) == 1
    assert CODE.verify("def add(a, b):\n    return 4\n", script).detail == "assert add(0, 0) == 0"


def test_no_reference_is_not_judged():
    verdict = CODE.verify(WHOLE, None)
    assert verdict.correct is None and verdict.reason == "no_reference"


def test_unchanged_inputs_are_not_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv(verdict_cache.ENV, str(tmp_path / "verdicts.sqlite"))
    runs = []
    real_run_tests = code_task.run_tests

    def counting(*args):
        runs.append(args[0])
        return real_run_tests(*args)

    monkeypatch.setattr(code_task, "run_tests", counting)
    pairs = [(WHOLE, REFERENCE), ("    return a - b\n", REFERENCE), (WHOLE, REFERENCE)]
    first = CODE.verify_many(pairs)
    assert len(runs) == 2  # the repeated pair runs once
    assert CODE.verify_many(pairs) == first and len(runs) == 2
    assert CODE.verify_many([("    return b + a\n", REFERENCE)])[0].correct == 1 and len(runs) == 3


def test_render_shows_the_signature_in_a_code_block():
    rendered = CODE.render([{"role": "user", "content": PROMPT}])
    assert rendered[0]["content"].endswith(f"```python\n{PROMPT}```") and "```python" in rendered[0]["content"]
    assert CODE.vote_key("anything") is None and not CODE.votes
