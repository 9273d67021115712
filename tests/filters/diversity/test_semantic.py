"""semantic_dup: planted paraphrases are flagged, different solutions are not, vectors are stored once."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.errors import TracebankError
from tracebank.filters.diversity import embeddings, semantic
from tracebank.filters.diversity.embeddings import Embedder, StoredVectors, reuse_or_embed, stored_vectors, text_digest
from tracebank.filters.diversity.semantic import Options, SemanticDuplicate, partitions, similar_pairs
from tracebank.filters.runner import ScoreConfig, score
from tracebank.tasks import get_task

MUFFINS = "A baker makes 24 muffins in the morning and half as many in the afternoon. How many muffins in total?"
TICKETS = "Tickets cost $8 for adults and $5 for children. A family buys 2 adult and 3 child tickets. What do they pay?"
CAR = "A car travels 45 miles per hour for 4 hours. How many miles does it travel?"

# Self-written GSM8K-style rationales: (trace_id, question, rationale, correct).
TRACES = [
    ("m1", MUFFINS, "In the afternoon she makes 24 / 2 = 12 muffins.\nAltogether she makes 24 + 12 = 36 muffins.\n#### 36", 1),
    ("m2", MUFFINS, "She makes 24 / 2 = 12 muffins in the afternoon.\nSo she makes 24 + 12 = 36 muffins altogether.\n#### 36", 1),  # paraphrase of m1
    ("m3", MUFFINS, "She makes 24 muffins twice, so 24 * 2 = 48 muffins.\n#### 48", 0),
    ("m4", MUFFINS, "Half of 24 is 12, and one and a half times 24 is 36.\n#### 36", 1),
    ("t1", TICKETS, "Two adult tickets cost 2 * 8 = $16.\nThree child tickets cost 3 * 5 = $15.\nThe family pays 16 + 15 = $31.\n#### 31", 1),
    ("t2", TICKETS, "The 2 adult tickets cost 2 * 8 = $16.\nThe 3 child tickets cost 3 * 5 = $15.\nSo the family pays 16 + 15 = $31 in total.\n#### 31", 1),  # paraphrase of t1
    ("t3", TICKETS, "Each person pays about $6.50 on average, and 5 people pay 5 * 6.5 = $32.50.\n#### 32.5", 0),
    ("t4", TICKETS, "The family buys 5 tickets, and at $8 each that is 5 * 8 = $40.\n#### 40", 0),
]  # fmt: skip


def traces_table(rows: list[tuple[str, str, str | None, int | None]]) -> pa.Table:
    return pa.table({
        "trace_id": [r[0] for r in rows],
        "prompt_id": [f"p-{r[1][:12]}" for r in rows],
        "messages": [[{"role": "user", "content": r[1]}] for r in rows],
        "rationale": pa.array([r[2] for r in rows], pa.string()),
        "answer": pa.array([get_task("math").parse(r[2]) if r[2] else None for r in rows], pa.string()),
        "correct": pa.array([r[3] for r in rows], pa.int8()),
    })  # fmt: skip


def by_id(result: pa.Table) -> dict[str, dict]:
    return {row["trace_id"]: row for row in result.to_pylist()}


def test_planted_paraphrases_are_flagged_and_different_solutions_are_not():
    scorer = SemanticDuplicate()
    rows = by_id(scorer.score(traces_table(TRACES)))
    flagged = {trace_id for trace_id, row in rows.items() if row["is_semantic_dup"]}
    assert flagged == {"m2", "t2"}
    assert rows["m2"]["duplicate_of"] == rows["m2"]["cluster_id"] == "m1"  # m1 is shorter, both correct
    assert rows["t2"]["duplicate_of"] == "t1" and rows["t1"]["cluster_size"] == 2
    assert rows["m2"]["similarity"] >= Options().threshold and rows["m2"]["reason"] == "semantic_duplicate"
    for trace_id in ("m1", "m3", "m4", "t1", "t3", "t4"):
        row = rows[trace_id]
        assert (row["passed"], row["reason"], row["duplicate_of"], row["similarity"]) == (True, "unique", None, None)
    assert rows["m3"]["cluster_id"] == "m3" and rows["m3"]["cluster_size"] == 1
    # The vectors made now are handed to the runner for the embeddings table.
    stored = scorer.outputs()["embeddings"]
    assert sorted(stored.column("trace_id").to_pylist()) == sorted(rows)
    assert set(stored.column("dim").to_pylist()) == {384}


def test_scope_prompt_never_pairs_different_questions_and_scope_dataset_can():
    copied = "Two adult tickets cost 2 * 8 = $16.\nThree child tickets cost 3 * 5 = $15.\nThe family pays 16 + 15 = $31.\n#### 31"
    table = traces_table([("a", TICKETS, copied, 1), ("b", CAR, copied, 0)])  # an answer filed under the wrong question
    within = by_id(SemanticDuplicate().score(table))
    assert within["a"]["is_semantic_dup"] == within["b"]["is_semantic_dup"] == 0
    across = by_id(SemanticDuplicate(Options(scope="dataset")).score(table))
    assert across["b"]["duplicate_of"] == "a" and across["b"]["similarity"] == pytest.approx(1.0)


def test_dataset_scope_with_kmeans_partitions_still_finds_planted_pairs():
    result = by_id(SemanticDuplicate(Options(scope="dataset", clusters=2, seed=3)).score(traces_table(TRACES)))
    assert {t for t, row in result.items() if row["is_semantic_dup"]} == {"m2", "t2"}


def test_a_correct_trace_represents_a_shorter_wrong_copy():
    correct = "A car travels 45 miles each hour for 4 hours, so it covers 45 * 4 = 180 miles in total.\n#### 180"
    wrong = "A car travels 45 miles each hour for 4 hours, so it covers 45 * 4 = 180 miles.\n#### 18"
    assert len(wrong) < len(correct)
    rows = by_id(
        SemanticDuplicate(Options(threshold=0.95, same_answer=False)).score(
            traces_table([("z", CAR, correct, 1), ("a", CAR, wrong, 0)])
        )
    )
    assert rows["z"]["cluster_id"] == rows["a"]["cluster_id"] == "z"
    assert (rows["a"]["is_semantic_dup"], rows["a"]["passed"], rows["z"]["passed"]) == (1, False, True)


def test_traces_without_rationale_are_not_embedded_or_judged():
    scorer = SemanticDuplicate()
    rows = by_id(scorer.score(traces_table([("x", CAR, None, None), ("y", CAR, "  \n", 0), *TRACES[:1]])))
    for trace_id in ("x", "y"):
        row = rows[trace_id]
        assert row["reason"] == "no_rationale" and row["passed"] is None
        assert all(row[m] is None for m in ("is_semantic_dup", "cluster_id", "cluster_size", "similarity"))
    assert scorer.outputs()["embeddings"].column("trace_id").to_pylist() == ["m1"]
    assert scorer.score(traces_table([("x", CAR, None, None)])).column("reason").to_pylist() == ["no_rationale"]
    assert scorer.outputs() == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": "bge-large"}, "unknown embedding model 'bge-large'; supported: all-MiniLM-L6-v2"),
        ({"threshold": 0}, r"threshold must be a cosine similarity in \(0, 1\]"),
        ({"threshold": 1.5}, "threshold must be"),
        ({"threshold": "high"}, "threshold must be"),
        ({"threshold": True}, "threshold must be"),
        ({"scope": "world"}, "scope must be one of prompt, dataset"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"scope": "dataset", "clusters": 0}, "clusters must be at least 1"),
        ({"clusters": 4}, "clusters partitions scope 'dataset' only"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"seed": "x"}, "seed must be a whole number"),
    ],
)
def test_options_are_validated(values, message):
    with pytest.raises(TracebankError, match=message):
        Options(**values)


def test_options_reach_the_scorer_through_the_score_config():
    with pytest.raises(TracebankError, match="unknown key 'treshold'"):
        ScoreConfig("toy", ("semantic_dup",), {"semantic_dup": {"treshold": 0.9}})
    assert (
        ScoreConfig("toy", ("semantic_dup",), {"semantic_dup": {"scope": "dataset"}}).scorers()[0].options.scope
        == "dataset"
    )


def test_local_model_directory_is_accepted(tmp_path):
    assert Options(model=str(tmp_path)).model == str(tmp_path)


def test_blockwise_pairs_equal_the_full_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(23, 8)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    monkeypatch.setattr(semantic, "BLOCK", 4)
    left, right, sims = similar_pairs(matrix, [np.arange(23)], 0.3)
    full = matrix @ matrix.T
    expected = {(i, j) for i in range(23) for j in range(i + 1, 23) if full[i, j] >= 0.3}
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == expected
    assert np.allclose(sims, full[left, right])


def test_kmeans_partitions_are_deterministic_and_cover_every_row():
    matrix = np.random.default_rng(1).normal(size=(60, 8)).astype(np.float32)
    first, again = partitions(matrix, 4, seed=7), partitions(matrix, 4, seed=7)
    assert [p.tolist() for p in first] == [p.tolist() for p in again]
    assert sorted(np.concatenate(first).tolist()) == list(range(60))
    assert [p.tolist() for p in partitions(matrix, 1, seed=7)] == [list(range(60))]


def test_reuse_or_embed_embeds_only_new_or_changed_texts(monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(
        Embedder, "encode", lambda self, texts, **kw: calls.append(texts) or np.ones((len(texts), 4), np.float32) / 2
    )
    monkeypatch.setattr(embeddings, "get_embedder", lambda model: _four())
    stored = StoredVectors(["a", "b"], [text_digest("same"), text_digest("old")], np.eye(2, 4, dtype=np.float32))
    matrix, rows = reuse_or_embed(stored, "m", ["a", "b", "c"], ["same", "new", "fresh"])
    assert calls == [["new", "fresh"]]
    assert matrix[0].tolist() == [1, 0, 0, 0] and matrix[1].tolist() == [0.5] * 4
    assert rows.column("trace_id").to_pylist() == ["b", "c"] and rows.column("dim").to_pylist() == [4, 4]
    matrix, rows = reuse_or_embed(stored, "m", ["a"], ["same"])
    assert len(calls) == 1 and rows.num_rows == 0 and matrix.shape == (1, 4)


class _FourDims:
    def get_embedding_dimension(self) -> int:
        return 4


def _four() -> Embedder:
    embedder = Embedder.__new__(Embedder)
    embedder.name, embedder._model = "m", _FourDims()
    return embedder


def test_stored_vectors_of_another_length_are_refused(monkeypatch):
    monkeypatch.setattr(embeddings, "get_embedder", lambda model: _four())
    monkeypatch.setattr(Embedder, "encode", lambda self, texts, **kw: np.ones((len(texts), 4), np.float32) / 2)
    stored = StoredVectors(["a"], [text_digest("same")], np.eye(1, 2, dtype=np.float32))
    with pytest.raises(TracebankError, match="have length 2, the model makes 4; delete them"):
        reuse_or_embed(stored, "m", ["a", "b"], ["same", "new"])
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS lake")
    con.execute(
        "CREATE TABLE lake.embeddings (trace_id TEXT, dataset TEXT, model TEXT, dim INT, text_digest TEXT, vector FLOAT[])"
    )
    con.execute(
        "INSERT INTO lake.embeddings VALUES ('a', 'toy', 'm', 2, 'x', [1, 0]), ('b', 'toy', 'm', 3, 'y', [1, 0, 0])"
    )
    with pytest.raises(TracebankError, match=r"several lengths \[2, 3\]"):
        stored_vectors(con, "toy", "m")
    assert stored_vectors(con, "toy", "other").trace_ids == []


def test_catalogs_without_an_embeddings_table_have_no_stored_vectors():
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS lake")
    found = stored_vectors(con, "toy", embeddings.DEFAULT_MODEL)
    assert found.trace_ids == [] and found.matrix.shape[0] == 0


def test_offline_switches_are_restored(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with embeddings.offline():
        import os

        assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "0" and "TRANSFORMERS_OFFLINE" not in os.environ


def test_score_stores_one_unit_vector_per_rationale_and_a_rerun_embeds_nothing(location, math_dataset, monkeypatch):
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher())
    embedded: list[int] = []
    encode = Embedder.encode
    monkeypatch.setattr(
        Embedder, "encode", lambda self, texts, **kw: embedded.append(len(texts)) or encode(self, texts, **kw)
    )
    first = score(location, ScoreConfig(math_dataset, ("semantic_dup",)))
    assert first.snapshot is not None and embedded == [12]
    with catalog.Catalog(location) as cat:
        rows = cat.arrow("SELECT trace_id, model, dim, vector FROM embeddings WHERE dataset = ?", [math_dataset])
        traces = cat.scalar("SELECT count(*) FROM traces WHERE dataset = ? AND rationale IS NOT NULL", [math_dataset])
    assert rows.num_rows == traces == 12 and len(set(rows.column("trace_id").to_pylist())) == 12
    assert set(rows.column("dim").to_pylist()) == {384} and set(rows.column("model").to_pylist()) == {
        "all-MiniLM-L6-v2"
    }
    vectors = np.array(rows.column("vector").to_pylist())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    again = score(location, ScoreConfig(math_dataset, ("semantic_dup",)))
    assert again.snapshot is None and embedded == [12]
    stricter = score(location, ScoreConfig(math_dataset, ("semantic_dup",), {"semantic_dup": {"threshold": 0.999}}))
    assert embedded == [12] and {s.filter: s.changed for s in stricter.filters}["semantic_dup"] == 12  # new version
    build(location, BuildConfig(math_dataset, samples=3), FakeTeacher())
    score(location, ScoreConfig(math_dataset, ("semantic_dup",)))
    assert embedded == [12, 6]  # only the new third sample of each prompt


def test_rationales_that_reach_different_answers_are_not_duplicates_unless_asked():
    rows = [
        ("a", MUFFINS, "In the afternoon she makes 24 / 2 = 12 muffins.\nAltogether she makes 24 + 12 = 36 muffins.\n#### 36", 1),
        ("b", MUFFINS, "In the afternoon she makes 24 / 2 = 12 muffins.\nAltogether she makes 24 + 12 = 38 muffins.\n#### 38", 0),
    ]  # fmt: skip
    assert {r["is_semantic_dup"] for r in by_id(SemanticDuplicate().score(traces_table(rows))).values()} == {0}
    loose = by_id(SemanticDuplicate(Options(same_answer=False)).score(traces_table(rows)))
    assert loose["b"]["is_semantic_dup"] == 1 and loose["b"]["duplicate_of"] == "a"
