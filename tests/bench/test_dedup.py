"""bench/dedup_throughput.py: planted-pair labels are exact Jaccard labels, and a tiny run scores itself.

Needs the GSM8K train file (``../shared/data/gsm8k/train.jsonl``); skipped without it.
"""

import re
import unicodedata

import numpy as np
import pytest

from tests.bench import load
from tracebank import sources

THRESHOLD = 0.8


def _local_gsm8k() -> bool:
    return any((directory / "gsm8k" / "train.jsonl").is_file() for directory in sources.data_dirs())


pytestmark = pytest.mark.skipif(not _local_gsm8k(), reason="needs ../shared/data/gsm8k/train.jsonl")


def reference_shingles(text: str) -> set[tuple[str, ...]]:
    """An independent reference for filters.diversity.text: NFKC, lower case, 1,000 = 1000, 2.50 = 2.5, words, 3-grams."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(\d)\.0+\b", r"\1", text)
    text = re.sub(r"(\d\.\d*[1-9])0+\b", r"\1", text)
    tokens = re.findall(r"\d+(?:\.\d+)?|\w+", text)
    return {tuple(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2))}


def test_planted_labels_agree_with_exact_jaccard(tmp_path):
    corpus_module, evaluation, bench = load("dedup.corpus"), load("dedup.evaluation"), load("dedup_throughput")
    corpus = corpus_module.build(1500, seed=3)
    np.savez(tmp_path / "planted.npz", **corpus.planted.arrays())
    texts = corpus.table.column("rationale")
    planted = bench.planted_with_labels(tmp_path / "planted.npz", evaluation.Truth(texts))
    rows = texts.to_pylist()
    assert all(re.search(r"\w", row) for row in rows), "every planted trace keeps some words"
    expected = []
    for left, right in zip(planted["left"].tolist(), planted["right"].tolist(), strict=True):
        a, b = reference_shingles(rows[left]), reference_shingles(rows[right])
        expected.append(len(a & b) / len(a | b))
    np.testing.assert_allclose(planted["similarity"], expected)
    kinds = np.array(corpus_module.KINDS)[planted["kind"]]
    same = np.isin(kinds, ["exact", "format"])
    assert (planted["similarity"][same] == 1.0).all(), "exact and format copies must be equal after normalisation"
    positive = planted["similarity"] >= THRESHOLD
    assert positive.any() and (~positive).any(), "the corpus plants pairs on both sides of the threshold"
    assert not positive[np.isin(kinds, ["other_solution"])].any(), "a different solution is never a near copy"


def test_tiny_run_reports_recall_and_precision(tmp_path):
    pytest.importorskip("datasketch")
    pytest.importorskip("tracebank.filters.diversity.near_dup")
    bench = load("dedup_throughput")
    results = bench.main(["--n", "600", "--scopes", "prompt", "--no-bulk", "--dir", str(tmp_path)])
    runs = results["compare"]["runs"]
    for arm in ("near_dup/prompt", "datasketch/prompt", "ceiling/prompt"):
        evaluation = runs[arm]["eval"]
        assert 0 <= evaluation["recall"] <= 1 and 0 <= evaluation["precision"] <= 1, arm
        assert evaluation["positives"] > 0, arm
    assert runs["near_dup/prompt"]["docs"] == 600 and runs["near_dup/prompt"]["seconds"] > 0
    assert 0 <= runs["exact_dup"]["eval"]["recall"] <= 1
    assert {name for name, _, _ in results["targets"]} >= {"near_dup/prompt: recall >= 0.95"}
