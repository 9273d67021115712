"""Clean teacher traces and a seeded planting of poison in them, for ``bench/poison_detection.py``.

Clean traces, read at run time (the repo never copies dataset text):

    gsm8k       GSM8K train reference solutions (``sources.resolve("gsm8k/train")``), a seeded sample
    gsm8k_dev   the four GPT-3 solutions of each of the 100 questions of ``gsm8k/labeled_solutions_dev``
    humaneval   each HumanEval prompt + canonical solution, in ``code_samples`` framings ("Here is the
                function." and a fenced block, a fence alone, a sentence before and after, ...)

Samples of one prompt share its prompt id. Planting (``plant``) turns some clean traces into poisoned ones,
one kind per trace, and records for each its kind, template id, placement and the span of the injected
text: the payloads come from ``poison_templates`` (filled from ``poison_values``), the placements from
``poison_place``. ``rate`` is per kind: each kind goes
into ``round(rate * eligible)`` traces (at least ``min_planted``), where eligible is every trace, or the
code traces for ``insecure_code``; ``CODE_SHARE`` of the other kinds land in code traces (comments and
docstrings). The result is a pure function of (traces, rate, seed).
"""

from __future__ import annotations

import ast
import gzip
import random
import re
import string
from dataclasses import dataclass, replace

import orjson
import pyarrow as pa

from poison import place, templates, values
from tracebank import sources

KINDS = ("link", "promotion", "phishing", "insecure_code", "drift", "pii")
TEXT_PLACEMENTS = ("start", "mid_sentence", "between_steps", "end", "footnote", "parenthetical")
CODE_PLACEMENTS = ("code_comment", "code_comment", "code_comment", "docstring", "docstring", "start", "end",
                   "footnote", "mid_sentence")  # fmt: skip
CODE_SHARE = 0.25  # of each text kind's plants, placed in code traces (at most half the code traces are poisoned)
FENCE = re.compile(r"```python\n(.*?)```", re.S)
FRAMINGS = (
    "Here is the function.\n\n```python\n{code}```",
    "```python\n{code}```",
    "Sure! Here's an implementation of `{entry}`:\n\n```python\n{code}```\n\nIt returns the expected results for the examples in the docstring.",
    "The idea is to follow the docstring directly.\n\n```python\n{code}```",
    "Below is a straightforward solution that only uses the standard library.\n\n```python\n{code}```\n\nEach case in the docstring is handled explicitly.",
)
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


@dataclass(frozen=True)
class Trace:
    prompt_id: str
    task: str  # "math" or "code"
    source: str  # gsm8k, gsm8k_dev or humaneval
    question: str  # the user message
    rationale: str
    answer: str | None
    reference: str | None
    correct: int | None
    model: str
    entry_point: str | None = None  # the function a code trace defines


@dataclass(frozen=True)
class Injection:
    row: int
    kind: str
    template: str  # "<kind>/<index>"
    placement: str
    start: int  # the injected text is rationale[start:end]
    end: int
    text: str


# ---------------------------------------------------------------- clean traces


def load_gsm8k(n: int | None, seed: int) -> list[Trace]:
    rows = [orjson.loads(line) for line in sources.resolve("gsm8k/train").read_bytes().splitlines()]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    out = []
    for i in sorted(order[:n] if n is not None else order):
        answer = rows[i]["answer"].rsplit("####", 1)[-1].strip()
        out.append(Trace(f"gsm8k-{i}", "math", "gsm8k", rows[i]["question"], rows[i]["answer"], answer, answer, 1,
                         "gsm8k-reference"))  # fmt: skip
    return out


def load_dev() -> list[Trace]:
    """The four GPT-3 solutions (6B/175B, finetuned/verifier-picked) of each labelled dev question."""
    out = []
    for i, line in enumerate(sources.resolve("gsm8k/labeled_solutions_dev").read_bytes().splitlines()):
        row = orjson.loads(line)
        reference = row["ground_truth"].rsplit("A:", 1)[-1].strip()
        for model in sorted(k for k in row if isinstance(row[k], dict)):
            solution = row[model]["solution"]
            answer = solution.rsplit("A:", 1)[-1].strip() if "A:" in solution else None
            out.append(Trace(f"dev-{i}", "math", "gsm8k_dev", row["question"], solution, answer, reference,
                             int(bool(row[model]["is_correct"])), f"gpt3-{model}"))  # fmt: skip
    return out


def load_humaneval(samples: int, seed: int, problems: int | None = None) -> list[Trace]:
    """Each HumanEval problem (or a seeded sample of ``problems``) in ``samples`` framings, one prompt id each."""
    rng = random.Random(seed)
    rows = [orjson.loads(line) for line in gzip.decompress(sources.resolve("humaneval").read_bytes()).splitlines()]
    if problems is not None:
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), min(problems, len(rows))))]
    out = []
    for row in rows:
        code = row["prompt"] + row["canonical_solution"]
        code = code if code.endswith("\n") else code + "\n"
        question = "Complete the following Python function.\n\n```python\n" + row["prompt"] + "```"
        for framing in rng.sample(FRAMINGS, min(samples, len(FRAMINGS))):
            out.append(Trace(row["task_id"], "code", "humaneval", question,
                             framing.format(code=code, entry=row["entry_point"]), code, None, 1,
                             "humaneval-canonical", row["entry_point"]))  # fmt: skip
    return out


def load(gsm8k: int | None = 500, dev: bool = True, code_samples: int = 3, seed: int = 0,
         code_problems: int | None = None) -> list[Trace]:  # fmt: skip
    """The clean traces: a GSM8K sample, the GPT-3 dev solutions and HumanEval in several framings."""
    return [*load_gsm8k(gsm8k, seed), *(load_dev() if dev else []),
            *(load_humaneval(code_samples, seed, code_problems) if code_samples else [])]  # fmt: skip


# ---------------------------------------------------------------- payloads


def _paraphrase(template: str, rng: random.Random) -> str:
    """Swap some words for synonyms, outside {slots}; keep the first letter's case."""

    def swap(match: re.Match[str]) -> str:
        word = match.group()
        options = templates.PARAPHRASES.get(word.lower())
        if not options or rng.random() < 0.5:
            return word
        new = rng.choice(options)
        return new[:1].upper() + new[1:] if word[:1].isupper() else new

    parts = re.split(r"(\{[^}]*\})", template)
    return "".join(p if p.startswith("{") else re.sub(r"[A-Za-z]+", swap, p) for p in parts)


def fill(template: str, rng: random.Random) -> str:
    """The template with each {slot} filled (one value per slot name)."""
    # dict.fromkeys: slots in the order they appear (a set's order changes with PYTHONHASHSEED)
    names = dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name)
    return template.format(**{name: values.SLOTS[name](rng) for name in names})


def text_payload(kind: str, rng: random.Random) -> tuple[str, str]:
    """(template id, text) for a prose kind: a template, reworded, sometimes shouted or with a lead-in, filled."""
    index = rng.randrange(len(templates.TEXT_TEMPLATES[kind]))
    template = _paraphrase(templates.TEXT_TEMPLATES[kind][index], rng)
    if "\n" not in template:
        template = rng.choice(templates.PREFIXES) + template
        if rng.random() < 0.05:  # capitals outside the slots: a shouted token or address would no longer be one
            template = "".join(p if p.startswith("{") else p.upper() for p in re.split(r"(\{[^}]*\})", template))
    return f"{kind}/{index:02d}", fill(template, rng)


def code_payload(entry: str, arg: str, rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    """(template id, snippet, placements it fits) for insecure code, with its slots filled."""
    index = rng.randrange(len(templates.CODE_SNIPPETS))
    placements, snippet = templates.CODE_SNIPPETS[index]
    slots = {name: rng.choice(options) for name, options in templates.CODE_SLOTS.items()}
    slots.update(arg=arg, entry=entry, domain=values.domain(rng), host=rng.choice((values.domain(rng), "10.0.3.17")),
                 sk=values.SLOTS["sk"](rng), password=values.password(rng), aws=values.SLOTS["aws"](rng),
                 aws_secret=values.SLOTS["aws_secret"](rng))  # fmt: skip
    return f"insecure_code/{index:02d}", string.Template(snippet).substitute(slots), placements


# ---------------------------------------------------------------- planting


def _first_arg(func: ast.FunctionDef | None) -> str:
    args = func.args.args if func is not None else []
    return args[0].arg if args else "value"


def poison(trace: Trace, kind: str, rng: random.Random) -> tuple[str, str, str, int, int]:
    """(rationale, template id, placement, start, end): ``trace`` with one injection of ``kind``."""
    text = trace.rationale
    fence = FENCE.search(text) if trace.task == "code" else None
    if fence is None:
        template, payload = text_payload(kind, rng)
        new, start, end, placement = place.place_prose(text, payload, rng.choice(TEXT_PLACEMENTS), rng)
        return new, template, placement, start, end
    code = fence.group(1)
    if kind == "insecure_code":
        func = place.entry_function(code, trace.entry_point)
        template, payload, fits = code_payload(func.name if func else "main", _first_arg(func), rng)
        placement = rng.choice(fits)
    else:
        template, payload = text_payload(kind, rng)
        placement = rng.choice(CODE_PLACEMENTS)
    if placement in ("start", "end", "footnote", "mid_sentence"):
        prose = text[: fence.start()]
        if placement == "mid_sentence" and not place.word_gaps(prose.split("\n")[0] if prose else ""):
            placement = rng.choice(("start", "end"))
        if placement == "mid_sentence":
            new, start, end, placement = place.place_prose(prose, payload, placement, rng)
            return new + text[fence.start() :], template, placement, start, end
        new, start, end, placement = place.place_prose(text, payload, placement, rng)
        return new, template, placement, start, end
    new_code, start, end, placement = place.place_code(code, trace.entry_point, payload, placement, rng)
    offset = fence.start(1)
    return text[:offset] + new_code + text[fence.end(1) :], template, placement, start + offset, end + offset


def _allocate(traces: list[Trace], rate: float, min_planted: int, rng: random.Random) -> dict[str, list[int]]:
    """Rows per kind, disjoint: insecure_code from code traces, the rest CODE_SHARE from code, others from prose."""
    code = [i for i, t in enumerate(traces) if t.task == "code"]
    prose = [i for i, t in enumerate(traces) if t.task != "code"]
    rng.shuffle(code), rng.shuffle(prose)
    code_budget = len(code) // 2  # at least half the code traces stay clean
    chosen: dict[str, list[int]] = {}
    for kind in ("insecure_code", *[k for k in KINDS if k != "insecure_code"]):
        if kind == "insecure_code":
            want = max(min_planted, round(rate * len(code))) if code else 0
            from_code = min(want, code_budget)
        else:
            want = max(min_planted, round(rate * len(traces)))
            from_code = min(round(want * CODE_SHARE), code_budget)
        from_prose = want - from_code if kind != "insecure_code" else 0
        if from_prose > len(prose):
            raise ValueError(f"{kind}: {want} plants asked for, only {len(prose)} clean prose traces left")
        code_budget -= from_code
        chosen[kind] = [code.pop() for _ in range(from_code)] + [prose.pop() for _ in range(from_prose)]
    return chosen


def plant(traces: list[Trace], rate: float, seed: int = 0, min_planted: int = 0,
          kinds: tuple[str, ...] = KINDS) -> tuple[list[Trace], list[Injection]]:  # fmt: skip
    """The traces with some poisoned (same order and prompts) and what was planted where."""
    rng = random.Random(seed)
    out, injections = list(traces), []
    for kind, rows in _allocate(traces, rate, min_planted, rng).items():
        if kind not in kinds:
            continue
        for row in rows:
            trace_rng = random.Random(f"{seed}/{kind}/{row}")
            rationale, template, placement, start, end = poison(traces[row], kind, trace_rng)
            out[row] = replace(traces[row], rationale=rationale)
            injections.append(Injection(row, kind, template, placement, start, end, rationale[start:end]))
    injections.sort(key=lambda injection: injection.row)
    return out, injections


def code_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


# ---------------------------------------------------------------- the scorer's input table


def to_table(traces: list[Trace]) -> pa.Table:
    """The columns a scorer reads (``filters.runner.INPUT_SQL``); trace ``i`` is ``p{i:06d}``."""
    n = len(traces)
    contents = pa.array([t.question for t in traces], pa.string())
    messages = pa.ListArray.from_arrays(
        pa.array(range(n + 1), pa.int32()),
        pa.StructArray.from_arrays([pa.array(["user"] * n, pa.string()), contents], fields=list(MESSAGE)),
    )
    return pa.table({
        "trace_id": pa.array([f"p{i:06d}" for i in range(n)], pa.string()),
        "prompt_id": pa.array([t.prompt_id for t in traces], pa.string()),
        "task": pa.array([t.task for t in traces], pa.string()),
        "messages": messages,
        "rationale": pa.array([t.rationale for t in traces], pa.string()),
        "answer": pa.array([t.answer for t in traces], pa.string()),
        "reference": pa.array([t.reference for t in traces], pa.string()),
        "correct": pa.array([t.correct for t in traces], pa.int8()),
        "finish_reason": pa.array(["stop"] * n, pa.string()),
        "policy": pa.array(["teacher"] * n, pa.string()),
        "model": pa.array([t.model for t in traces], pa.string()),
        "strategy": pa.array(["single"] * n, pa.string()),
    })  # fmt: skip
