"""Sampling plans: expand each prompt into K requests, one per sample, varied over strategies.

``default`` sends the task's rendering of the prompt K times with the configured sampling
parameters and seeds ``seed + k``. Any other strategy names the axes that vary across a prompt's
samples (comma-separated, combinable: ``styles,ladder``):

* ``ladder``: temperature/top-p steps (``--ladder 0.3:1.0,0.7:0.95,1.0:0.9``)
* ``styles``: a system prompt per style: concise, step-by-step, verify-your-work, explain-simply
* ``fewshot``: ``shots`` worked examples from a pool (the dataset's prompts with a reference,
  train split first), rotated so each sample sees different ones
* ``paraphrase``: the task's instruction in other words (same answer format)

Sample k of a prompt takes variant ``(k + offset) % len(variants)`` on each axis, with an offset
per (seed, prompt, axis), so every variant appears once a prompt has that many samples and the
first sample is not always the same variant. The same config always plans the same requests, so
the request cache keys are stable. Every trace stores its variant as ``strategy``, e.g.
``styles=concise;ladder=0.7/0.95``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import xxhash

from tracebank.builders.base import Request, SamplingParams
from tracebank.errors import TracebankError
from tracebank.hashing import digest, request_key
from tracebank.tasks import get_task
from tracebank.tasks.math import INSTRUCTION as MATH_INSTRUCTION

AXES = ("ladder", "styles", "fewshot", "paraphrase")
STRATEGIES = ("default", *AXES)  # ``strategy`` is "default" or a comma-separated subset of AXES
DEFAULT_LADDER = "0.3:1.0,0.6:0.95,0.9:0.95,1.1:0.9"
STYLES: dict[str, str] = {
    "concise": "You are a precise problem solver. Reason briefly: write only the steps that are needed.",
    "step-by-step": "You are a careful tutor. Reason step by step and write out every intermediate result.",
    "verify-your-work": "You are a meticulous problem solver. Solve the problem, then check the result "
    "another way before you state the final answer.",
    "explain-simply": "You are a patient teacher. Explain your reasoning in plain words a beginner can follow.",
}
# Per task: (text to replace, its paraphrases). Math paraphrases keep the '#### <number>' format
# the answer parser reads; text tasks get framings of the request itself.
PARAPHRASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "math": (
        MATH_INSTRUCTION,
        (
            MATH_INSTRUCTION,
            "Work through the problem one step at a time. On the last line write '#### <number>' "
            "with only the final numeric answer.",
            "Reason carefully before answering. Finish with a line of the form '#### <number>' that "
            "holds just the numeric answer.",
            "Think it through step by step, then give the final answer alone on a last line "
            "formatted as '#### <number>'.",
        ),
    ),
    "text": ("{request}", ("{request}", "{request}\n\nTake your time and be precise.",
                           "Here is a request:\n\n{request}", "{request}\n\nExplain how you got there.")),
}  # fmt: skip


@dataclass(frozen=True)
class PlanSpec:
    """How samples vary: the axes and their variants (validated; see the module docstring)."""

    strategy: str = "default"
    ladder: str = DEFAULT_LADDER
    styles: str = ",".join(STYLES)
    shots: int = 2

    def __post_init__(self) -> None:
        self.axes()
        self.steps()
        self.style_names()
        if not 1 <= self.shots <= 16:
            raise TracebankError(f"shots must be in [1, 16], got {self.shots}")

    def axes(self) -> tuple[str, ...]:
        names = tuple(name.strip() for name in self.strategy.split(",") if name.strip())
        if names == ("default",):
            return ()
        unknown = [name for name in names if name not in AXES]
        if unknown or not names:
            raise TracebankError(
                f"unknown strategy {self.strategy!r}; use default, or a comma-separated list of {', '.join(AXES)}"
            )
        if len(set(names)) != len(names):
            raise TracebankError(f"strategy {self.strategy!r} names an axis twice")
        return names

    def steps(self) -> tuple[tuple[float, float], ...]:
        try:
            steps = tuple(
                (float(t), float(p)) for t, p in (item.split(":") for item in self.ladder.split(",") if item.strip())
            )
        except ValueError:
            raise TracebankError(
                f"ladder {self.ladder!r}: expected temperature:top_p pairs, e.g. 0.3:1.0,0.9:0.95"
            ) from None
        if not steps:
            raise TracebankError("ladder needs at least one temperature:top_p step")
        for temperature, top_p in steps:
            SamplingParams(temperature, top_p)  # the same range checks as --temperature/--top-p
        return steps

    def style_names(self) -> tuple[str, ...]:
        names = tuple(name.strip() for name in self.styles.split(",") if name.strip())
        unknown = [name for name in names if name not in STYLES]
        if unknown or not names:
            raise TracebankError(
                f"unknown style {unknown[0] if unknown else '(none)'!r}; styles are {', '.join(STYLES)}"
            )
        return names


def _offset(seed: int, prompt_id: str, axis: str) -> int:
    return xxhash.xxh64_intdigest(f"{seed}\x00{prompt_id}\x00{axis}".encode())


def plan_requests(
    prompts: Iterable[Mapping[str, Any]],
    model: str,
    params: SamplingParams,
    samples: int,
    seed: int = 0,
    spec: PlanSpec | None = None,
    pool: Sequence[Mapping[str, Any]] = (),
) -> list[Request]:
    """One request per (prompt, sample); prompts need ``prompt_id``, ``task`` and ``messages``.

    ``pool`` holds few-shot examples (``prompt_id``, ``task``, ``messages``, ``reference``).
    """
    return list(iter_requests(prompts, model, params, samples, seed, spec, pool))


def iter_requests(
    prompts: Iterable[Mapping[str, Any]],
    model: str,
    params: SamplingParams,
    samples: int,
    seed: int = 0,
    spec: PlanSpec | None = None,
    pool: Sequence[Mapping[str, Any]] = (),
) -> Iterator[Request]:
    """:func:`plan_requests`, lazily: a prompt's requests are made when they are reached."""
    spec = spec or PlanSpec()
    axes = spec.axes()
    if "fewshot" in axes and len(pool) < 2:
        raise TracebankError("the fewshot strategy needs at least 2 prompts with a reference in the dataset")
    for prompt in prompts:
        task = get_task(prompt["task"])
        messages = task.render(prompt["messages"])
        for sample_idx in range(samples):
            sample_params = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, seed + sample_idx)
            sample_messages, label = messages, "default"
            if axes:
                sample_messages, sample_params, label = _vary(
                    prompt, messages, sample_params, sample_idx, seed, spec, pool
                )
            key = request_key(model, sample_messages, sample_params.as_dict(), sample_idx)
            yield Request(key, prompt["prompt_id"], model, sample_messages, sample_params, sample_idx, label, task.name)


def _vary(
    prompt: Mapping[str, Any],
    messages: list[dict[str, str]],
    params: SamplingParams,
    k: int,
    seed: int,
    spec: PlanSpec,
    pool: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, str]], SamplingParams, str]:
    """Sample ``k``'s variant on every axis of ``spec``: its messages, parameters and label."""
    messages = [dict(m) for m in messages]
    labels = []
    for axis in spec.axes():
        pick = k + _offset(seed, prompt["prompt_id"], axis)
        if axis == "ladder":
            temperature, top_p = spec.steps()[pick % len(spec.steps())]
            params = SamplingParams(temperature, top_p, params.max_new_tokens, params.seed)
            labels.append(f"ladder={temperature:g}/{top_p:g}")
        elif axis == "styles":
            style = spec.style_names()[pick % len(spec.style_names())]
            messages = _with_system(messages, STYLES[style])
            labels.append(f"styles={style}")
        elif axis == "paraphrase":
            original, variants = PARAPHRASES.get(prompt["task"], PARAPHRASES["text"])
            index = pick % len(variants)
            messages = _paraphrased(messages, original, variants[index])
            labels.append(f"paraphrase={index}")
        else:
            shots = _shots(prompt["prompt_id"], pick, spec.shots, pool)
            messages = _few_shot(shots) + messages
            labels.append(f"fewshot={digest(*(s['prompt_id'] for s in shots))[:8]}")
    return messages, params, ";".join(labels)


def _with_system(messages: list[dict[str, str]], style: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{style}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": style}, *messages]


def _paraphrased(messages: list[dict[str, str]], original: str, variant: str) -> list[dict[str, str]]:
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    content = messages[last_user]["content"]
    content = variant.replace("{request}", content) if original == "{request}" else content.replace(original, variant)
    return [*messages[:last_user], {"role": "user", "content": content}, *messages[last_user + 1 :]]


def _shots(prompt_id: str, pick: int, count: int, pool: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``count`` pool examples other than the prompt itself, starting at a rotating position."""
    others = [example for example in pool if example["prompt_id"] != prompt_id]
    start = (pick * count) % len(others)
    return [others[(start + i) % len(others)] for i in range(min(count, len(others)))]


def _few_shot(shots: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    turns = []
    for shot in shots:
        rendered = get_task(shot["task"]).render(shot["messages"])
        turns += [m for m in rendered if m["role"] == "user"][-1:]
        turns.append({"role": "assistant", "content": shot["reference"]})
    return turns


@dataclass(frozen=True)
class Shaping:
    """A closed-loop build's change to some prompts' requests, and the tags every trace of it carries.

    ``notes`` maps a prompt_id to text added to the end of the prompt's last user message (a
    student's wrong answer as feedback, a reference as a hint); a prompt without a note is asked as
    usual. The request key covers the note, so a shaped request is cached apart from the plain one.
    """

    label: str  # added to each trace's strategy, e.g. "round=2" or "hint"
    notes: Mapping[str, str] = field(default_factory=dict)
    round: int | None = None  # stored in traces.round
    hinted: bool | None = None  # stored in traces.hinted
    lineage: Mapping[str, str] = field(default_factory=dict)  # prompt_id -> JSON stored in traces.lineage

    def __post_init__(self) -> None:
        if not self.label or ";" in self.label:
            raise TracebankError(f"a shaping label must be non-empty text without ';', got {self.label!r}")
        if self.round is not None and self.round < 1:
            raise TracebankError(f"round must be 1 or more, got {self.round}")

    def tags(self, prompt_id: str) -> dict[str, Any]:
        """The closed-loop columns of a trace of ``prompt_id``."""
        return {"round": self.round, "hinted": self.hinted, "lineage": self.lineage.get(prompt_id)}


def shaped(requests: Iterable[Request], shaping: Shaping) -> Iterator[Request]:
    """``requests`` with their prompt's note added, their strategy labelled, and their key recomputed."""
    for request in requests:
        note = shaping.notes.get(request.prompt_id)
        messages = request.messages if note is None else _with_note(request.messages, note)
        strategy = shaping.label if request.strategy == "default" else f"{request.strategy};{shaping.label}"
        key = request_key(request.model, messages, request.params.as_dict(), request.sample_idx)
        yield replace(request, key=key, messages=messages, strategy=strategy)


def _with_note(messages: list[dict[str, str]], note: str) -> list[dict[str, str]]:
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    content = f"{messages[last_user]['content']}\n\n{note}"
    return [*messages[:last_user], {"role": "user", "content": content}, *messages[last_user + 1 :]]
