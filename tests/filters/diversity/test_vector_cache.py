"""The on-disk vector cache behind every embedding: reuse by (model files, text), never stale, never fatal."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from tracebank.filters.diversity import embeddings
from tracebank.filters.diversity.embeddings import VECTOR_CACHE, Embedder, get_embedder, model_key

TEXTS = ["Add the apples: 3 + 4 = 7.", "Each box holds 12 pens.", "Add the apples: 3 + 4 = 7."]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "vectors.sqlite"
    monkeypatch.setenv(VECTOR_CACHE.env, str(path))
    return path


def _fresh() -> Embedder:
    default = get_embedder()
    return Embedder(default.name, default.path)  # no model loaded yet


def test_a_second_encode_reads_the_cache_without_loading_the_model(cache, monkeypatch):
    first = _fresh().encode(TEXTS)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.array_equal(first[0], first[2]) and cache.is_file()

    again = _fresh()
    monkeypatch.setattr(Embedder, "_encode", lambda *a, **k: pytest.fail("a cached text was embedded again"))
    assert np.array_equal(again.encode(TEXTS), first)
    assert again._model is None  # nothing to embed, so the model never loaded


def test_only_texts_without_a_cached_vector_are_embedded(cache, monkeypatch):
    embedder = _fresh()
    embedder.encode(TEXTS[:1])
    seen: list[list[str]] = []
    real = Embedder._encode
    monkeypatch.setattr(Embedder, "_encode", lambda self, texts, *a: seen.append(texts) or real(self, texts, *a))
    out = embedder.encode(["New text about trains.", *TEXTS])
    assert seen == [["New text about trains.", "Each box holds 12 pens."]]  # each missing text once
    assert np.allclose(out[1], out[3]) and out.shape == (4, 384)


def test_the_cache_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv(VECTOR_CACHE.env, "off")
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    real = Embedder._encode
    monkeypatch.setattr(Embedder, "_encode", lambda self, texts, *a: calls.append(len(texts)) or real(self, texts, *a))
    embedder = _fresh()
    embedder.encode(TEXTS)
    embedder.encode(TEXTS)
    assert calls == [2, 2] and VECTOR_CACHE.location() is None


def test_an_unwritable_cache_warns_once_and_the_vectors_still_come(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(VECTOR_CACHE.env, str(blocker / "vectors.sqlite"))
    monkeypatch.setattr(VECTOR_CACHE, "_warned", False)
    embedder = _fresh()
    assert embedder.encode(TEXTS).shape == (3, 384)
    assert embedder.encode(TEXTS[1:]).shape == (2, 384)
    err = capsys.readouterr().err
    assert err.count("warning: cannot write the cache") == 1 and "TRACEBANK_EMBEDDING_CACHE=off" in err


def test_a_model_changed_in_place_gets_a_new_key(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights")
    before = model_key("mine", str(model))
    assert model_key("mine", str(model)) == before and model_key("other", str(model)) != before
    later = time.time() + 10
    os.utime(weights, (later, later))  # retrained: same size, new time
    assert model_key("mine", str(model)) != before


def test_get_embedder_loads_nothing_until_asked(monkeypatch):
    get_embedder.cache_clear()
    try:
        embedder = get_embedder()
        assert embedder._model is None and embedder.dim == 384 and embedder._model is not None
    finally:
        get_embedder.cache_clear()
    assert embeddings.get_embedder() is embeddings.get_embedder()
