"""Perplexity: how surprising a rationale is to a small local reference model, relative to the dataset.

One more signal for the safety family, and a weak one: "Cascading Adversarial Bias" reports that
perplexity filters missed its poisoned traces, since an injected sentence is fluent text. It is
run by name (``--filter perplexity``), not with the ``safety`` group.

The reference model (default: the embedded SmolLM2-135M, ``tracebank.models``; any local causal
LM directory works) reads each trace as the teacher saw it: the prompt messages through the
model's chat template with the generation prompt, then the rationale. Only the rationale's tokens
are scored: ``perplexity`` = exp(mean negative log-likelihood of those tokens). A trace longer than
``max_tokens`` keeps the rationale's first tokens and as much of the prompt's end as fits (at
least one token). Traces are batched by length on the GPU when there is one, else the CPU with
torch's default threads; nothing downloads (Hugging Face offline switches on).

``log_ppl_z`` is the robust z-score of log-perplexity within the scored dataset,
(x - median) / (1.4826 * MAD); a trace is flagged when it exceeds ``z_threshold``: a dataset-relative
outlier, so the same trace may pass in one dataset and be flagged in another. A trace with no
rationale (or one that tokenises to nothing) is not judged: ``flagged`` null, reason ``no_text``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tracebank import precision as precision_mod
from tracebank import ui
from tracebank.errors import TracebankError
from tracebank.filters.diversity.embeddings import offline
from tracebank.filters.safety.safety import safety_result
from tracebank.models import DEFAULT_MODEL, resolve_model

KIND = "perplexity outlier"
MAD_SCALE = 1.4826  # MAD times this estimates the standard deviation of normal data
MEAN_AD_SCALE = 1.2533  # the same for the mean absolute deviation, used when over half the values are equal
LOSS_CHUNK = 2048  # scored tokens per log-softmax: bounds the (tokens x vocabulary) logits held at once


@dataclass(frozen=True)
class PerplexityOptions:
    model: str = DEFAULT_MODEL  # an embedded model name (tracebank.models) or a local transformers directory
    max_tokens: int = 512  # prompt and rationale tokens read per trace; longer traces are cut (module docs)
    batch_size: int = 8  # traces per forward pass
    z_threshold: float = 3.5  # flag a trace whose log-perplexity robust z-score exceeds this
    # The reference model's dtype (tracebank.precision). fp32, not auto: in bf16 a trace's perplexity moves
    # by ~0.1% with the other traces of its batch (padding changes the kernels' blocking), and a stored
    # score must not depend on what it was batched with. bf16 halves the time where that is acceptable.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise TracebankError(f"perplexity model: a model name or a local directory, got {self.model!r}")
        for name, low in (("max_tokens", 2), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TracebankError(f"perplexity {name}: a whole number of at least {low}, got {value!r}")
        z = self.z_threshold
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
            raise TracebankError(f"perplexity z_threshold: a number above 0 (3.5 is usual), got {z!r}")
        precision_mod.check(self.precision, "perplexity precision")


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD) of each value, NaN kept as NaN and ignored in the statistics.

    When over half the values are equal (MAD 0) the mean absolute deviation stands in; when every
    value is equal, every z-score is 0.
    """
    values = np.asarray(values, dtype=np.float64)
    known = values[~np.isnan(values)]
    if not len(known):
        return values.copy()
    median = np.median(known)
    spread = MAD_SCALE * np.median(np.abs(known - median))
    if spread == 0:
        spread = MEAN_AD_SCALE * np.mean(np.abs(known - median))
    if spread == 0:
        return np.where(np.isnan(values), np.nan, 0.0)
    return (values - median) / spread


@functools.lru_cache(maxsize=2)
def load_reference(model: str, precision: str = "fp32") -> tuple[Any, Any, str]:
    """(tokenizer, model in eval mode, device) of ``model`` in ``precision``, loaded once per process, offline."""
    with offline():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = resolve_model(model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = AutoTokenizer.from_pretrained(path)
        dtype = precision_mod.resolve(precision, device).torch_dtype()
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return tokenizer, loaded, device


def encode(tokenizer: Any, messages: list[dict] | None, rationale: str, max_tokens: int) -> tuple[list[int], int]:
    """Token ids of prompt-then-rationale, cut to ``max_tokens``, and how many of them (at the end) are the rationale."""
    chat = [{"role": m.get("role") or "user", "content": m.get("content") or ""} for m in messages or []]
    context = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True) if chat else []
    context = list(getattr(context, "input_ids", context))  # some tokenizers return a BatchEncoding
    if not context:  # the first rationale token needs something to be predicted from
        context = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    target = tokenizer(rationale, add_special_tokens=False)["input_ids"][: max_tokens - 1]
    return context[-(max_tokens - len(target)) :] + target, len(target)


def mean_nll(tokenizer: Any, model: Any, device: str, batch: list[tuple[list[int], int]]) -> list[float]:
    """Mean negative log-likelihood of each sequence's last ``scored`` tokens given the tokens before them."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)  # positions whose NEXT token is scored
    for row, (tokens, count) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        scored[row, len(tokens) - count - 1 : len(tokens) - 1] = True
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        # The decoder's hidden states, then the vocabulary projection of the scored positions only:
        # logits for every position of a padded batch would cost batch x width x vocabulary floats.
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows, cols = scored.nonzero(as_tuple=True)
        targets = ids[rows.to(device), cols.to(device) + 1]
        states = hidden[rows.to(device), cols.to(device)]
        losses = torch.cat([
            torch.nn.functional.cross_entropy(
                model.get_output_embeddings()(states[i : i + LOSS_CHUNK]).float(),
                targets[i : i + LOSS_CHUNK],
                reduction="none",
            )
            for i in range(0, len(targets), LOSS_CHUNK)
        ])  # fmt: skip
    totals = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, rows, losses.double().cpu())
    return [float(totals[row]) / count for row, (_, count) in enumerate(batch)]


class Perplexity:
    name = "perplexity"
    version = "1"
    reads = ("trace_id", "messages", "rationale")
    Options = PerplexityOptions

    def __init__(self, options: PerplexityOptions | None = None):
        self.options = options or PerplexityOptions()

    def score(self, table: pa.Table) -> pa.Table:
        rows = table.select(list(self.reads)).to_pylist()
        judged = any(_has_text(row) for row in rows)  # no text: the model is not even loaded
        log_ppl = self.log_perplexities(rows) if judged else np.full(len(rows), np.nan)
        return self.result([row["trace_id"] for row in rows], log_ppl)

    def log_perplexities(self, rows: list[dict]) -> np.ndarray:
        """Mean negative log-likelihood of each row's rationale (NaN when it has no tokens), batched by length."""
        tokenizer, model, device = load_reference(self.options.model, self.options.precision)
        encoded = {
            i: encode(tokenizer, row["messages"], row["rationale"], self.options.max_tokens)
            for i, row in enumerate(rows)
            if _has_text(row)
        }
        todo = sorted((i for i in encoded if encoded[i][1]), key=lambda i: -len(encoded[i][0]))  # longest first
        out = np.full(len(rows), np.nan)
        size = self.options.batch_size
        with ui.progress("perplexity", total=len(todo)) as bar:
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                out[chunk] = mean_nll(tokenizer, model, device, [encoded[i] for i in chunk])
                bar.update(0, advance=len(chunk))
        return out

    def result(self, trace_ids: list[str], log_ppl: np.ndarray) -> pa.Table:
        """The scorer's rows from each trace's log-perplexity (NaN: not judged)."""
        z = robust_z(log_ppl)
        known = ~np.isnan(log_ppl)
        median = float(np.exp(np.median(log_ppl[known]))) if known.any() else math.nan
        flagged = [
            None if not ok else int(score > self.options.z_threshold) for ok, score in zip(known, z, strict=True)
        ]
        evidence = [
            f"perplexity {math.exp(x):.1f} vs dataset median {median:.1f} (robust z {score:.1f} > {self.options.z_threshold:g})"
            if flag
            else None
            for flag, x, score in zip(flagged, log_ppl, z, strict=True)
        ]
        metrics = {
            "perplexity": pa.array(
                [math.exp(x) if ok else None for ok, x in zip(known, log_ppl, strict=True)], pa.float64()
            ),
            "log_ppl_z": pa.array([float(s) if ok else None for ok, s in zip(known, z, strict=True)], pa.float64()),
        }
        return safety_result(trace_ids, KIND, flagged, evidence, [None] * len(trace_ids), metrics)


def _has_text(row: dict) -> bool:
    return bool(row["rationale"] and row["rationale"].strip())
