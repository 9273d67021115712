"""Chunk-wise SFT (Skip-Thinking): one target chunk per example, with the earlier chunks as context.

Training on a long rationale at once averages the loss over every token, so the few tokens that
decide the reasoning barely move the gradient; learning one chunk at a time keeps them visible.
For a kept trace with chunks ``c0 … cn`` (the ``chunks`` table, latest chunking run), example k is,
in TRL's conversational prompt-completion format::

    prompt:     the task's rendered question [+ an assistant message holding c0 … c(k-1) as written]
    completion: [assistant: ck]

The skip variant (``chunk_skip``) leaves the non-reasoning chunks (``filters.chunking.chunk_kinds.NON_REASONING``:
restatements, transitions and summaries) out of both targets and context, so the student learns to go
from one reasoning step to the next without them. A trace without chunks is one example, whole.

TRL would render a prompt that ends with an assistant message as a finished turn followed by a new
one, and end every completion with the end-of-turn token. :func:`tokenize_continuation` instead
renders the context and the target as one assistant turn, and ends the turn only after a trace's
last chunk, so the student is not taught to stop after every step.
"""

from __future__ import annotations

from typing import Any

from tracebank.errors import TracebankError
from tracebank.filters.chunking.chunk_kinds import NON_REASONING
from tracebank.tasks import get_task
from tracebank.train.base import sft_trainer

SENTINEL = "\ue000tracebank-end-of-content\ue000"


def _example(row: dict[str, Any], context: str, target: str, final: bool) -> dict[str, Any]:
    prompt = get_task(row["task"]).render(row["messages"])
    if context:
        prompt = [*prompt, {"role": "assistant", "content": context}]
    return {
        "trace_id": row["trace_id"],
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": target.rstrip() if final else target}],
        "final": final,
    }


def trace_examples(row: dict[str, Any], chunks: list[dict[str, Any]], skip: bool) -> tuple[list[dict[str, Any]], int]:
    """The examples of one chunked trace, and how many of its chunks the skip variant left out."""
    text = row["rationale"]
    kept = [c for c in chunks if not (skip and c["kind"] in NON_REASONING)]
    examples, context = [], ""
    for k, chunk in enumerate(kept):
        target = text[chunk["char_start"] : chunk["char_end"]]
        examples.append(_example(row, context if skip else text[: chunk["char_start"]], target, k == len(kept) - 1))
        context += target
    return examples, len(chunks) - len(kept)


def chunkwise_examples(
    rows: list[dict[str, Any]], chunks: list[dict[str, Any]], skip: bool, where: str
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Chunk-wise examples of every kept trace, and counters for the training card."""
    if not chunks:
        raise TracebankError(
            f"no chunks for the kept traces of {where}: chunk-wise SFT trains on the chunks table; "
            "run `tracebank score DATASET --filter chunking` first"
        )
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks:
        by_trace.setdefault(chunk["trace_id"], []).append(chunk)
    examples: list[dict[str, Any]] = []
    stats = dict.fromkeys(("chunked_traces", "unchunked_traces", "chunk_examples", "chunks_skipped"), 0)
    stats.update({f"skipped_{kind}": 0 for kind in NON_REASONING} if skip else {})
    for row in rows:
        spans = by_trace.get(row["trace_id"])
        if spans is None:
            stats["unchunked_traces"] += 1
            examples.append(_example(row, "", row["rationale"], True))
            continue
        made, skipped = trace_examples(row, spans, skip)
        stats["chunked_traces"] += 1
        stats["chunk_examples"] += len(made)
        stats["chunks_skipped"] += skipped
        for chunk in spans if skip else []:
            if chunk["kind"] in NON_REASONING:
                stats[f"skipped_{chunk['kind']}"] += 1
        examples.extend(made)
    return examples, {k: float(v) for k, v in stats.items()}


def end_of_turn(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message's content (``<|im_end|>\\n`` for ChatML)."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": SENTINEL}], tokenize=False
    )
    return rendered.split(SENTINEL, 1)[1]


def tokenize_continuation(example: dict[str, Any], tokenizer: Any, turn_end: str) -> dict[str, list[int]]:
    """Token ids of context + target as one assistant turn, and the mask of the target's tokens."""
    messages = example["prompt"]
    context = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
    question = messages[:-1] if context else messages
    head = tokenizer.apply_chat_template(question, add_generation_prompt=True, tokenize=False) + context
    full = head + example["completion"][0]["content"] + (turn_end if example["final"] else "")
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    shared = 0
    while shared < min(len(head_ids), len(full_ids)) and head_ids[shared] == full_ids[shared]:
        shared += 1  # tokens may merge across the seam: the target starts where the two differ
    return {"input_ids": full_ids, "completion_mask": [0] * shared + [1] * (len(full_ids) - shared)}


def chunkwise_trainer(model: Any, tokenizer: Any, train_set: Any, common: dict[str, Any]) -> Any:
    """A TRL SFTTrainer over the examples tokenized as continuations (loss on each target chunk only)."""
    import trl

    turn_end = end_of_turn(tokenizer)
    tokenized = train_set.map(
        lambda example: tokenize_continuation(example, tokenizer, turn_end), remove_columns=train_set.column_names
    )
    return sft_trainer(model, tokenizer, tokenized, trl.SFTConfig(**common, completion_only_loss=True))
