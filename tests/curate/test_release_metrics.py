import math
import re

import pytest

from tests.conftest import write_jsonl
from tracebank import catalog, records
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data

ROWS = [  # question A: answers 5, 5, 6, 6 (1 bit); question B: 7, 7 (0 bits)
    ("A", "add two and three to get 5 #### 5"),
    ("A", "two plus three is 5 #### 5"),
    ("A", "add two and three to get 6 #### 6"),
    ("A", "so the total is 6 #### 6"),
    ("B", "seven it is #### 7"),
    ("B", "seven it is, surely #### 7"),
]


@pytest.fixture
def released(location, tmp_path):
    rows = [
        {"question": f"Question {q}?", "answer": "#### 0", "solution": s, "id": str(i)} for i, (q, s) in enumerate(ROWS)
    ]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    import_data(
        location,
        ImportConfig(str(path), "m", ColumnMap.parse("prompt=question,reference=answer,response=solution,id=id")),
    )
    score(location, ScoreConfig("m", ("near_dup",), {"near_dup": {"threshold": 0.5}}))
    with catalog.writing(location, "a planted contamination verdict") as writer:
        trace_id = writer.arrow("SELECT trace_id FROM traces WHERE source_id = '4'").column(0)[0].as_py()
        row = {"trace_id": trace_id, "dataset": "m", "filter": "decontam", "metric": "benchmark", "value": None,
               "detail": "gsm8k-test", "passed": False, "reason": "contaminated", "filter_version": "1",
               "run_id": "r", "scored_at": records.now()}  # fmt: skip
        writer.insert("scores", records.to_table([row], records.SCORES))
    policy = {"name": "keep-b", "rules": [{"name": "not_b", "when": "source_id IN ('0', '1', '2', '3')", "action": "drop"}],
              "splits": {"train": 1.0}}  # fmt: skip
    result = releases.curate(location, "m", Policy.from_dict(policy), str(policy), "metrics")
    with catalog.Catalog(location) as cat:
        frame = cat.sql(
            "SELECT split, metric, key, value FROM metrics WHERE dataset = 'm' AND version = ?", [result.version]
        )
    return {(r["split"], r["metric"], r["key"]): r["value"] for r in frame.to_dicts()}


def distinct(texts, n):
    grams = []
    for text in texts:
        words = re.findall(r"\d+(?:\.\d+)?|\w+", text.lower())
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams)


def test_distinct_n_matches_an_independent_count(released):
    texts = [s for _, s in ROWS]
    for n in (1, 2, 3):
        assert released[("input", f"distinct_{n}", None)] == pytest.approx(distinct(texts, n))
        assert released[("train", f"distinct_{n}", None)] == pytest.approx(distinct(texts[4:], n))
    assert released[("input", "distinct_sample", None)] == 6 and released[("all", "distinct_sample", None)] == 2


def test_answer_entropy_is_the_mean_over_prompts(released):
    assert released[("input", "answer_entropy", None)] == pytest.approx((1.0 + 0.0) / 2)
    assert released[("all", "answer_entropy", None)] == pytest.approx(0.0)
    assert math.isclose(released[("train", "answer_entropy", None)], 0.0, abs_tol=1e-12)


def test_strategy_contamination_and_cluster_histogram(released, location):
    assert (
        released[("input", "strategy_traces", "imported")] == 6
        and released[("all", "strategy_traces", "imported")] == 2
    )
    assert released[("input", "contaminated_traces", "gsm8k-test")] == 1
    assert released[("all", "contaminated_prompts", "gsm8k-test")] == 1
    sizes = {key: value for (split, metric, key), value in released.items() if metric == "dup_cluster_size"}
    with catalog.Catalog(location) as cat:
        clusters = cat.sql(
            "SELECT detail AS cluster, count(*) AS n FROM scores WHERE filter = 'near_dup' AND metric = 'cluster_id' GROUP BY 1"
        )
    expected = {}
    for n in clusters["n"].to_list():
        bucket = {1: "1", 2: "2", 3: "3-4", 4: "3-4"}.get(n, "5-8")
        expected[bucket] = expected.get(bucket, 0) + 1
    assert sizes == expected and sum(expected.values()) < 6  # the edited A traces are near duplicates


def test_the_card_shows_the_stored_metrics_and_warns_of_contamination(released, location):
    from tracebank.curate.releases import ReleaseRef
    from tracebank.data_cards.render import render_card

    text = render_card(location, ReleaseRef.parse("m@v1")).read_text()
    assert "## Diversity and contamination" in text and "**Contamination:** 1 kept traces overlap" in text
    row = next(line for line in text.splitlines() if line.startswith("| distinct_2 |"))
    assert f"{released[('input', 'distinct_2', None)]:.3f}" in row
    assert "| gsm8k-test | 1 / 1 | 1 / 1 | 1 / 1 |" in text and "| imported | 6 | 2 | 2 |" in text
