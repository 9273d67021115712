"""Shared fixtures: temporary catalogs, small in-memory datasets and an in-process fake teacher."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson
import pytest

from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def tree_fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes: equal fingerprints mean nothing changed."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def location(tmp_path: Path) -> catalog.CatalogLocation:
    return catalog.locate(tmp_path / "catalog")


@pytest.fixture
def math_file(tmp_path: Path) -> Path:
    """Six GSM8K-style prompts with '#### N' references."""
    rows = [{"id": f"q{i}", "question": q, "answer": f"Work.\n#### {a}"} for i, (q, a) in enumerate(QUESTIONS.items())]
    return write_jsonl(tmp_path / "math.jsonl", rows)


@pytest.fixture
def math_dataset(location: catalog.CatalogLocation, math_file: Path) -> str:
    cfg = ImportConfig(str(math_file), "toy", ColumnMap.parse("prompt=question,reference=answer,id=id"))
    import_data(location, cfg)
    return "toy"


@pytest.fixture
def scored(location: catalog.CatalogLocation, math_dataset: str) -> str:
    """The toy dataset with 4 FakeTeacher traces per prompt (samples 0 and 2 correct), scored."""
    build(location, BuildConfig(math_dataset, samples=4), FakeTeacher())
    score(location, ScoreConfig(math_dataset))
    return math_dataset


@pytest.fixture(autouse=True, scope="session")
def _private_verdict_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the commands they start) never read or write the user's verdict or vector cache."""
    os.environ["TRACEBANK_VERDICT_CACHE"] = str(tmp_path_factory.mktemp("verdicts") / "verdicts.sqlite")
    os.environ["TRACEBANK_EMBEDDING_CACHE"] = str(tmp_path_factory.mktemp("vectors") / "embeddings.sqlite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (their order kept): with ``-n`` (make test), the minutes-long ones start at
    once on every worker instead of ending the run on one of them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
