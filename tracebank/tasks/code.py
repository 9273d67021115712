"""Python coding tasks (HumanEval and alike): render, extract the code, run its tests in a sandbox.

A prompt's reference is either a JSON object ``{"test": ..., "entry_point": ..., "prompt": ...}``
(HumanEval: ``test`` defines ``check(candidate)``, called with the entry point; ``prompt`` is the
signature and docstring a completion continues) or plain test code run after the solution
(MBPP-style top-level ``assert`` lines). ``tracebank import --task code --map
reference=prompt+test+entry_point`` builds the JSON object from a file's columns.

``extract_code`` tries the rules in :data:`RULES` in order; each is named beside its code and
tests/tasks/test_code.py has a case for each. Tests run in :mod:`tracebank.sandbox`.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from tracebank import hashing, verdict_cache
from tracebank.sandbox import SandboxLimits, run_python
from tracebank.tasks.base import Messages, Verdict, edit_last_user

INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function (with any imports it "
    "needs) in one ```python code block."
)
CHECKER = "tracebank-code-1"  # in every cache key: bump when the harness changes what a verdict means
FENCE = re.compile(r"```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
PYTHON_TAGS = ("", "python", "py", "python3")
TOP_LEVEL_CODE = re.compile(r"(?:def|async\s+def|class|import|from)\s|@")
STATUS_REASONS = {"passed": "correct"}  # every other sandbox status is a reason of its own


def _fenced(text: str) -> list[str]:
    blocks = [body for tag, body in FENCE.findall(text) if tag.lower() in PYTHON_TAGS]
    with_defs = [b for b in blocks if re.search(r"^(?:async\s+)?(?:def|class)\s", b, re.MULTILINE)]
    return (with_defs or blocks)[-1:]


def _completion(text: str) -> list[str]:
    """A body continuing the prompt's signature: indented first line; stops at the first top-level
    line that is not a def, class, import or decorator (HumanEval's stop sequences, minus \\ndef
    and \\nclass so helper functions survive)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first[:1].isspace():
        return []
    kept: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line[:1].isspace() and not TOP_LEVEL_CODE.match(line):
            break
        kept.append(line)
    return ["\n".join(kept).rstrip() + "\n"]


def _program(text: str) -> list[str]:
    """Unfenced code after any prose: from the first top-level def/class/import line, the longest
    run of lines that parses (trailing prose or a truncated line is dropped)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if TOP_LEVEL_CODE.match(line)), None)
    if start is None:
        return []
    for end in range(len(lines), max(start, len(lines) - 50), -1):
        candidate = "\n".join(lines[start:end]).rstrip() + "\n"
        try:
            ast.parse(candidate)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        return [candidate]
    return ["\n".join(lines[start:]) + "\n"]  # unparsable: the sandbox reports the syntax error


RULES: list[tuple[str, Callable[[str], list[str]]]] = [
    # A fenced block (```python, ```py or bare ```): the last one that defines a function or class,
    # else the last one; an unclosed fence (a truncated reply) runs to the end.
    ("fenced", _fenced),
    # The completion of the given signature (HumanEval's raw-completion format).
    ("completion", _completion),
    # Code without a fence, possibly after a line of prose.
    ("program", _program),
]


def extract_code(text: str | None) -> tuple[str | None, str | None]:
    """(code, rule name) from a completion; (None, None) when it holds no code."""
    if not text or not text.strip():
        return None, None
    for rule, finder in RULES:
        for code in finder(text):
            if code.strip():
                return code, rule
    return None, None


@dataclass(frozen=True)
class TestSpec:
    test: str
    entry_point: str | None = None  # None: the test is a script run after the code
    prompt: str = ""  # the signature a completion continues, plus its imports and helpers


def parse_reference(reference: str | None) -> TestSpec | None:
    """The tests of a reference: a JSON object with ``test`` (and ``entry_point``, ``prompt``), or a
    plain test script; None when there is none."""
    if reference is None or not reference.strip():
        return None
    try:
        spec = json.loads(reference)
    except ValueError:
        return TestSpec(test=reference) if _has_code(reference) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("test"), str) or not _has_code(spec["test"]):
        return None
    entry = spec.get("entry_point")
    return TestSpec(spec["test"], entry if isinstance(entry, str) and entry else None, str(spec.get("prompt") or ""))


def _has_code(test: str) -> bool:
    """Whether a test script holds any statement: a blank or comment-only one checks nothing (no reference)."""
    return any(line.strip() and not line.strip().startswith("#") for line in test.splitlines())


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return bool(re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE))
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def solution_source(code: str, spec: TestSpec) -> str:
    """The program under test: a whole function is appended to the prompt (which keeps its imports
    and helpers; the stub it redefines is harmless), a completion continues it."""
    if not spec.prompt:
        return code
    if spec.entry_point and _defines(code, spec.entry_point):
        prompt = spec.prompt.rstrip() + "\n"
        if not _parses(prompt):  # a bare signature without a docstring: give the stub a body
            prompt += "    pass\n"
        return prompt + "\n\n" + code
    return spec.prompt + code


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def run_tests(code: str, spec: TestSpec, limits: SandboxLimits) -> Verdict:
    """Run ``spec``'s tests against ``code`` in the sandbox: a Verdict with the first failing assertion."""
    result = run_python([("<solution>", solution_source(code, spec)), ("<test>", spec.test)], spec.entry_point, limits)
    reason = STATUS_REASONS.get(result.status, result.status)
    return Verdict(int(result.passed), reason, detail=result.detail)


class CodeTask:
    name = "code"
    reads = ("messages", "reference")
    writes = ("answer",)
    votes = False  # programs do not vote: equal behaviour is not equal text

    def __init__(self, limits: SandboxLimits | None = None, workers: int | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.workers = workers or max(1, len(os.sched_getaffinity(0)))

    def render(self, messages: Messages) -> Messages:
        """The stored prompt (a signature and docstring) in a code block, after the instruction."""
        return edit_last_user(messages, lambda signature: f"{INSTRUCTION}\n\n```python\n{signature}```")

    def parse(self, text: str) -> str | None:
        return extract_code(text)[0]

    def _key(self, code: str, spec: TestSpec) -> str:
        return hashing.digest("code", CHECKER, asdict(self.limits), code, asdict(spec))

    def verify_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[Verdict]:
        """Sandboxed test runs, ``workers`` at a time; verdicts of unchanged inputs come from the cache."""
        verdicts: list[Verdict | None] = []
        jobs: dict[str, tuple[str, TestSpec]] = {}
        keys: dict[int, str] = {}
        for i, (code, reference) in enumerate(pairs):
            spec = parse_reference(reference)
            if spec is None:
                verdicts.append(Verdict(None, "no_reference"))
            elif code is None or not code.strip():
                verdicts.append(Verdict(0, "no_answer"))
            else:
                verdicts.append(None)
                keys[i] = self._key(code, spec)
                jobs[keys[i]] = (code, spec)
        done = {key: Verdict(**value) for key, value in verdict_cache.get_many(jobs).items()}
        todo = [key for key in jobs if key not in done]
        with ThreadPoolExecutor(self.workers) as pool:  # threads only wait on sandbox processes
            for key, verdict in zip(todo, pool.map(lambda k: run_tests(*jobs[k], self.limits), todo), strict=True):
                done[key] = verdict
        verdict_cache.put_many({key: asdict(done[key]) for key in todo})
        return [verdicts[i] or done[keys[i]] for i in range(len(pairs))]

    def verify(self, answer: str | None, reference: str | None) -> Verdict:
        return self.verify_many([(answer, reference)])[0]

    def is_correct(self, answer: str | None, reference: str | None) -> int | None:
        return self.verify(answer, reference).correct

    def vote_key(self, answer: str | None) -> str | None:
        return None
