import numpy as np
import pytest

from tests.conftest import write_jsonl
from tracebank import catalog
from tracebank.curate import releases
from tracebank.curate.policy import Policy, decide
from tracebank.curate.select import farthest_point_order
from tracebank.errors import TracebankError
from tracebank.importer import ColumnMap, ImportConfig, import_data


def unit(*rows):
    matrix = np.array(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_farthest_point_order_starts_first_and_takes_the_most_different_next():
    vectors = unit([1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0, 1], [0.7, 0.7, 0])
    order, picked_at = farthest_point_order(vectors)
    assert order[0] == 0 and set(order[1:3]) == {2, 3}  # the two orthogonal rows before the near-copy of row 0
    assert order[-1] == 1 and np.isnan(picked_at[0]) and picked_at[1] < 0.01  # the near-copy comes last
    assert sorted(order.tolist()) == list(range(5))


def test_farthest_point_order_breaks_ties_by_the_earlier_row():
    vectors = unit([1, 0], [0, 1], [0, 1], [1, 0])
    order, _ = farthest_point_order(vectors)
    assert order.tolist()[:2] == [0, 1]


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ({"method": "random", "k": 2}, "select.method must be one of diverse"),
        ({"method": "diverse", "k": 0}, "select.k must be a positive integer"),
        ({"method": "diverse", "k": 2, "model": "no-such-model"}, "unknown embedding model"),
        ({"method": "diverse", "kk": 2}, "unknown key 'kk'"),
        ("diverse", "select must be a mapping"),
    ],
)
def test_bad_select_is_refused(select, message):
    with pytest.raises(TracebankError, match=message):
        Policy.from_dict({"name": "p", "rules": [], "select": select})


def test_select_and_max_per_prompt_are_exclusive():
    with pytest.raises(TracebankError, match="select.k or max_per_prompt"):
        Policy.from_dict({"name": "p", "rules": [], "select": {"k": 2}, "max_per_prompt": 2})


SOLUTIONS = [
    "Natalia sold 48 / 2 = 24 clips in May. So she sold 48 + 24 = 72 clips in April and May. #### 72",
    "In May Natalia sold half of 48, which is 24 clips. Together that makes 48 + 24 = 72 clips. #### 72",
    "Natalia sold 48/2 = 24 clips in May, so she sold 48 + 24 = 72 clips in April and May. #### 72",
    "Let x be the clips sold in May: x = 48 * 0.5 = 24. The total over both months is 48 + x = 72. #### 72",
]


@pytest.fixture
def four_solutions(location, tmp_path):
    """One question with four imported solutions; t0 and t2 say the same thing."""
    question = "Natalia sold clips to 48 of her friends in April, and half as many in May. How many in total?"
    rows = [{"question": question, "answer": "#### 72", "solution": s, "id": f"t{i}"} for i, s in enumerate(SOLUTIONS)]
    path = write_jsonl(tmp_path / "solutions.jsonl", rows)
    import_data(
        location,
        ImportConfig(str(path), "nat", ColumnMap.parse("prompt=question,reference=answer,response=solution,id=id")),
    )
    return "nat"


@pytest.mark.slow
def test_diverse_selection_keeps_the_most_different_traces_and_stores_ranks(location, four_solutions):
    policy = Policy.from_dict({"name": "diverse", "rules": [], "order_by": "source_id", "select": {"k": 2},
                               "splits": {"train": 1.0}})  # fmt: skip
    with catalog.Catalog(location) as cat:
        decided = {d["trace_id"]: d for d in decide(cat.con, four_solutions, policy).to_pylist()}
        source = dict(cat.sql("SELECT trace_id, source_id FROM traces").iter_rows())
    by_source = {source[t]: d for t, d in decided.items()}
    assert by_source["t0"]["rank"] == 1 and by_source["t0"]["keep"]  # the first by order_by starts
    assert by_source["t2"]["rank"] == 4 and not by_source["t2"]["keep"]  # t0's near-copy is the last choice
    assert by_source["t2"]["rule"] == "quota" and by_source["t2"]["reason"] == "select: diverse k=2, rank 4"
    assert sum(d["keep"] for d in decided.values()) == 2 and sorted(d["rank"] for d in decided.values()) == [1, 2, 3, 4]
    result = releases.curate(location, four_solutions, policy, "select: {k: 2}", "diverse two")
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM embeddings WHERE dataset = 'nat'") == 4  # stored with the release
        stored = cat.sql("SELECT trace_id, rank, keep FROM decisions WHERE version = ?", [result.version])
    assert {r["trace_id"]: r["rank"] for r in stored.to_dicts()} == {t: d["rank"] for t, d in decided.items()}
