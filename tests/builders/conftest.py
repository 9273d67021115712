"""Fixtures for builder tests: a real loopback HTTP stub teacher and openai build configs for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tracebank import catalog
from tracebank.builders.runner import BuildConfig
from tracebank.builders.stub_server import StubOptions, StubServer
from tracebank.importer import ColumnMap, ImportConfig, import_data

FAST_RETRIES = {"backoff_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer(StubOptions()) as server:
        yield server


def start_stub(**options: object) -> StubServer:
    return StubServer(StubOptions(**options))  # type: ignore[arg-type]


def openai_config(dataset: str, base_url: str, **kwargs: object) -> BuildConfig:
    options = {"base_url": base_url, "concurrency": 8, **FAST_RETRIES, **kwargs.pop("options", {})}  # type: ignore[dict-item]
    values = {"backend": "openai", "model": "gpt-4o-mini", "samples": 1, "max_new_tokens": 64, **kwargs}
    return BuildConfig(dataset, options=options, **values)  # type: ignore[arg-type]


def import_questions(location: catalog.CatalogLocation, path: Path, questions: list[str], dataset: str = "q") -> str:
    """A text dataset with one prompt per question (marks like [[status:400]] script the stub)."""
    path.write_bytes(
        b"".join(orjson.dumps({"question": q, "answer": f"#### {i}"}) + b"\n" for i, q in enumerate(questions))
    )
    import_data(
        location, ImportConfig(str(path), dataset, ColumnMap.parse("prompt=question,reference=answer"), task="text")
    )
    return dataset
