"""Teacher-forced probes of bench/curation_value.py: how likely a student finds a given text after a given context.

A probe row is (prompt messages, partial solution, target text); its score is the mean log-probability
per token of the target's tokens given the chat-rendered prompt, the generation prompt and the partial
solution, computed with ``filters.memorization.perplexity.mean_nll``, the function the perplexity filter uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tracebank.filters.memorization.perplexity import mean_nll
from tracebank.tasks import get_task


@dataclass(frozen=True)
class Probe:
    messages: list[dict]  # the prompt as stored; rendered with the math task's instruction
    prefix: str  # partial solution the target follows ("" for none)
    target: str  # the scored text


@dataclass(frozen=True)
class MeanInterval:
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"


def mean_interval(values: list[float], z: float = 1.96) -> MeanInterval:
    """The mean with a normal-approximation 95% interval (the values are per-prompt means)."""
    n = len(values)
    mean = sum(values) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = z * spread / math.sqrt(n) if n else 0.0
    return MeanInterval(mean, mean - half, mean + half, n)


def load(student: str, precision: str = "auto"):
    """(tokenizer, model, device) of a model name or directory, loaded fresh (not cached: students differ)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tracebank import precision as precision_mod
    from tracebank.models import resolve_model

    path = resolve_model(student)
    tokenizer = AutoTokenizer.from_pretrained(path)
    dtype = precision_mod.resolve(precision, "cpu").torch_dtype()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    torch.set_grad_enabled(False)
    return tokenizer, model, "cpu"


def _ids(tokenizer, probe: Probe) -> tuple[list[int], int]:
    chat = get_task("math").render(probe.messages)
    context = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    context = list(getattr(context, "input_ids", context))
    prefix = tokenizer(probe.prefix, add_special_tokens=False)["input_ids"] if probe.prefix else []
    target = tokenizer(probe.target, add_special_tokens=False)["input_ids"]
    return context + prefix + target, len(target)


def mean_logprobs(loaded, probes: list[Probe], batch_size: int = 16) -> list[float]:
    """Mean log-probability per target token of each probe, under one loaded student."""
    tokenizer, model, device = loaded
    encoded = [_ids(tokenizer, p) for p in probes]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths share a batch
    out = [0.0] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, nll in zip(chunk, mean_nll(tokenizer, model, device, [encoded[i] for i in chunk]), strict=True):
            out[i] = -nll
    return out
