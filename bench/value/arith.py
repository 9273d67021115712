"""The arithmetic arm of bench/curation_value.py: a sloppy teacher, and a tiny student made from a config.

The task (after Lee et al., 2023, "Teaching Arithmetic to Small Transformers"): add two numbers
below 1000, written with three digits, with a scratchpad that works the columns from the right, one
line per column with the carry in (``7+5+0=12``), then ``#### <sum>``, the line tracebank's math
task parses. The teacher gets a share of final answers wrong (:class:`TeacherMix`), each trace
consistent with its own wrong answer, and cuts some traces mid-scratchpad (``finish_reason:
length``). The student is a 4-layer Llama built from a config (no download) with a
character-level tokenizer, saved as a local model directory whose chat template tracebank's SFT and
eval use like any other model's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tracebank.tasks.math import INSTRUCTION

USER, ASSISTANT, EOS, PAD, UNK = "<|user|>", "<|assistant|>", "<eos>", "<pad>", "<unk>"
# The math task appends INSTRUCTION to every question: one token of its own, so a character-level model
# does not spend 130 positions per example on a constant.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '" + USER + "' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '" + ASSISTANT + "' + message['content'] + '" + EOS + "' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT + "' }}{% endif %}"
)


@dataclass(frozen=True)
class TeacherMix:
    """How sloppy the teacher is. Its errors are mostly systematic, as a weak model's are: a column
    that adds up to exactly 10 is written down, and its carry then forgotten, in ``forget_ten`` of the
    cases where one occurs (about a quarter of the problems); plus random slips and truncations."""

    forget_ten: float = 0.7  # P(the carry out of a column totalling 10 is dropped), where there is one
    slip: float = 0.05  # P(one column added wrong by 1-2, carried through consistently)
    truncated: float = 0.08  # P(the trace is cut mid-scratchpad: finish_reason length)


def problems(count: int, seed: int, exclude: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    """Distinct (a, b) pairs of numbers below 1000, none in ``exclude``."""
    rng, seen, out = random.Random(seed), set(exclude), []
    while len(out) < count:
        a, b = rng.randrange(1000), rng.randrange(1000)
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def question(a: int, b: int) -> str:
    """Operands written with three digits (Lee et al. pad with zeros too): every column sits at the same place."""
    return f"What is {a:03d} + {b:03d}?"


def has_ten(a: int, b: int) -> bool:
    """Whether some column (carry in included) adds up to exactly 10: where the teacher's bug can fire."""
    carry = 0
    for x, y in zip(f"{a:03d}"[::-1], f"{b:03d}"[::-1], strict=True):
        total = int(x) + int(y) + carry
        if total == 10:
            return True
        carry = total // 10
    return False


def scratchpad(a: int, b: int, forget_ten: bool = False, slip_column: int | None = None,
               rng: random.Random | None = None) -> tuple[str, int]:  # fmt: skip
    """The column-by-column trace (ones first, carry in last) and the sum it reaches."""
    carry, digits, lines = 0, [], []
    for column, (x, y) in enumerate(zip(f"{a:03d}"[::-1], f"{b:03d}"[::-1], strict=True)):
        total = int(x) + int(y) + carry
        if column == slip_column and rng is not None:
            total = max(0, total + rng.choice((-2, -1, 1, 2)))
        lines.append(f"{x}+{y}+{carry}={total}")
        digits.append(total % 10)
        carry = 0 if forget_ten and total == 10 else total // 10
    return "\n".join(lines), int(str(carry) + "".join(str(d) for d in reversed(digits)))


def teacher_trace(a: int, b: int, rng: random.Random, mix: TeacherMix) -> dict:
    """One recorded response: ``text``, ``finish_reason`` and what the teacher did (``kind``)."""
    forget = has_ten(a, b) and rng.random() < mix.forget_ten
    slip = rng.randrange(3) if rng.random() < mix.slip else None
    pad, reached = scratchpad(a, b, forget, slip, rng)
    full = f"{pad}\n#### {reached}"
    kind = "correct" if reached == a + b else "slip" if slip is not None else "forgot_carry"
    if rng.random() < mix.truncated:
        return {"text": full[: rng.randrange(4, len(full) - 6)], "finish_reason": "length", "kind": "truncated"}
    return {"text": full, "finish_reason": "stop", "kind": kind}


def recordings(pairs: list[tuple[int, int]], samples: int, seed: int, mix: TeacherMix) -> list[dict]:
    """Replay-backend rows: the k-th recording of a prompt answers its sample k."""
    rng = random.Random(seed)
    rows = []
    for a, b in pairs:
        for k in range(samples):
            rows.append({"prompt": question(a, b), "sample_idx": k, **teacher_trace(a, b, rng, mix)})
    return rows


def make_student(directory: Path, seed: int, layers: int = 4, width: int = 128) -> Path:
    """A randomly initialised small Llama and its character-level tokenizer, saved under ``directory``."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AddedToken, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = [PAD, EOS, UNK, USER, ASSISTANT]
    chars = ["\n", *(chr(c) for c in range(32, 127))]
    vocab = {token: i for i, token in enumerate([*specials, *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, pad_token=PAD, unk_token=UNK, chat_template=CHAT_TEMPLATE
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT]})
    tokenizer.add_tokens([AddedToken(INSTRUCTION, normalized=False, single_word=False)])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
