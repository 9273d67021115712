"""Recorded responses from a file as a teacher: for tests, imports of existing generations, audits.

The file (JSONL, JSON or Parquet; see :mod:`tracebank.readers`) has one recorded response per
row: its text in ``text`` (or ``response``, ``rationale``, ``completion``), and what it answers,
either ``request_key`` (exact: e.g. ``tracebank sql "SELECT request_key, rationale AS text FROM
traces" --format json`` of an earlier build) or ``prompt``, the question as imported (the k-th
recording of a prompt answers its sample k, or ``sample_idx`` says which). Optional:
``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``error``.

A request with no recording is left unfinished (never cached): the build names how many and
exits non-zero, and a later build with a fuller file sends only those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracebank.builders.base import UNFINISHED, Request, Response
from tracebank.builders.budget import estimate_tokens, prompt_tokens_estimate
from tracebank.errors import TracebankError
from tracebank.readers import read_rows

TEXT_FIELDS = ("text", "response", "rationale", "completion")


@dataclass(frozen=True)
class ReplayOptions:
    path: str | None = None  # the recordings file

    def __post_init__(self) -> None:
        if not self.path:
            raise TracebankError("the replay backend needs a recordings file: --replay-file PATH (options.path)")


class ReplayTeacher:
    backend = "replay"

    def __init__(self, model: str, path: str | None = None):
        self.model = model
        self.path = Path(ReplayOptions(path).path or "")
        self.by_key: dict[str, dict[str, Any]] = {}
        self.by_prompt: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for number, row, _ in read_rows(self.path):
            self._index(number, row)
        if not self.by_key and not self.by_prompt:
            raise TracebankError(f"{self.path}: no recordings (rows need a text and a request_key or a prompt)")

    def _index(self, number: int, row: dict[str, Any]) -> None:
        if not any(isinstance(row.get(name), str) for name in TEXT_FIELDS) and not row.get("error"):
            raise TracebankError(f"{self.path}: row {number} has no text (one of {', '.join(TEXT_FIELDS)})")
        if row.get("request_key"):
            self.by_key[str(row["request_key"])] = row
        elif isinstance(row.get("prompt"), str):
            samples = self.by_prompt[row["prompt"].strip()]
            samples[int(row["sample_idx"]) if row.get("sample_idx") is not None else len(samples)] = row
        else:
            raise TracebankError(f"{self.path}: row {number} names neither request_key nor prompt")

    def _find(self, request: Request) -> dict[str, Any] | None:
        if request.key in self.by_key:
            return self.by_key[request.key]
        question = next(m["content"] for m in reversed(request.messages) if m["role"] == "user").strip()
        for prompt, samples in self.by_prompt.items():
            if question == prompt or question.startswith(prompt + "\n"):  # rendered: instruction appended
                return samples.get(request.sample_idx)
        return None

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        for request in requests:
            row = self._find(request)
            if row is None:
                yield Response(request.key, None, UNFINISHED, error=f"no recording in {self.path}")
                continue
            text = next((row[name] for name in TEXT_FIELDS if isinstance(row.get(name), str)), None)
            finish = row.get("finish_reason") or ("error" if row.get("error") else "stop")
            yield Response(
                request.key, text, finish,
                prompt_tokens=row.get("prompt_tokens") or prompt_tokens_estimate(request),
                completion_tokens=row.get("completion_tokens") or estimate_tokens(text),
                error=row.get("error"),
            )  # fmt: skip
