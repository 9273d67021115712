"""Local generation with transformers: batched, left-padded, on the GPU when there is one."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, islice

import xxhash

from tracebank import precision as precision_mod
from tracebank.builders.base import Request, Response
from tracebank.errors import check_at_least
from tracebank.models import resolve_model

CHUNK_BATCHES = 8  # batches pulled at once: sorted by length within, so a budget can stop between


@dataclass(frozen=True)
class TransformersOptions:
    batch_size: int = 8  # requests per generation batch
    device: str | None = None  # cuda when there is a GPU, else cpu
    precision: str = "auto"  # the weights' dtype: auto | fp32 | bf16 | fp16 (tracebank.precision)

    def __post_init__(self) -> None:
        check_at_least(self, 1, "batch_size")
        precision_mod.check(self.precision, "transformers precision")


class TransformersTeacher:
    backend = "transformers"

    def __init__(self, model: str, batch_size: int = 8, device: str | None = None, precision: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = resolve_model(model)
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = precision_mod.resolve(precision, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = self.precision.torch_dtype()
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.stop_ids = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        """Batches of requests that share sampling parameters, shortest prompts first (per chunk)."""
        pending = iter(requests)
        while chunk := list(islice(pending, self.batch_size * CHUNK_BATCHES)):
            prompts = {r.key: self._prompt(r) for r in chunk}
            by_params = sorted(chunk, key=lambda r: (repr(r.params), len(prompts[r.key])))
            for _, group in groupby(by_params, key=lambda r: repr(r.params)):
                group = list(group)
                for start in range(0, len(group), self.batch_size):
                    yield from self._batch(group[start : start + self.batch_size], prompts)

    def _prompt(self, request: Request) -> str:
        return self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)

    def _batch(self, batch: list[Request], prompts: dict[str, str]) -> Iterator[Response]:
        import torch

        started = time.perf_counter()
        params = batch[0].params
        encoded = self.tokenizer(
            [prompts[r.key] for r in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        # One seed per batch, derived from its request keys: reruns of the same batch sample alike.
        torch.manual_seed(xxhash.xxh64_intdigest("".join(r.key for r in batch).encode()) % 2**63)
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **(sampling if params.temperature > 0 else {"do_sample": False}),
            )
        latency = (time.perf_counter() - started) / len(batch)
        width = encoded["input_ids"].shape[1]
        for row, request in enumerate(batch):
            tokens = output[row, width:].tolist()
            stop = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
            kept = tokens if stop is None else tokens[:stop]
            yield Response(
                key=request.key,
                text=self.tokenizer.decode(kept, skip_special_tokens=True),
                finish_reason="length" if stop is None else "stop",
                prompt_tokens=int(encoded["attention_mask"][row].sum()),
                completion_tokens=len(kept) + (0 if stop is None else 1),
                latency_s=latency,
            )


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
