import re

import pyarrow as pa
import pytest

from tracebank.errors import TracebankError
from tracebank.filters.base import make_scorer, stored_version
from tracebank.filters.diversity.near_dup import NearDuplicate, NearDupOptions, lsh_bands
from tracebank.filters.runner import ScoreConfig

BASE = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May. Natalia sold 48+24 = <<48+24=72>>72 clips altogether "
    "in April and May. She kept none of them for herself, and her brother bought the last ones. #### 72"
)
OTHER = (
    "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = "
    "$<<0.2*50=10>>10 for the afternoon of babysitting. #### 10"
)


def shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    """An independent reference: word 3-grams of the lower-cased text (punctuation dropped)."""
    tokens = re.findall(r"\d+(?:\.\d+)?|\w+", text.lower())
    return {tuple(tokens[i : i + size]) for i in range(max(1, len(tokens) - size + 1))}


def exact_jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def table(rationales, questions=None, correct=None, ids=None):
    n = len(rationales)
    ids = ids or [f"t{i}" for i in range(n)]
    questions = questions or ["How many clips?"] * n
    return pa.table({
        "trace_id": ids, "prompt_id": [f"p-{q}" for q in questions],
        "messages": [[{"role": "user", "content": q}] for q in questions],
        "rationale": rationales, "correct": pa.array(correct or [None] * n, pa.int8()),
    })  # fmt: skip


def scored(t, **options):
    return {r["trace_id"]: r for r in NearDuplicate(NearDupOptions(**options)).score(t).to_pylist()}


def test_edited_copy_is_a_near_duplicate_with_its_exact_jaccard():
    edited = BASE.replace("She kept none", "She kept nothing")
    assert exact_jaccard(BASE, edited) >= 0.8
    rows = scored(table([BASE, edited, OTHER]))
    dup = next(r for r in rows.values() if r["is_near_dup"] == 1)
    assert dup["duplicate_of"] in ("t0", "t1") and dup["duplicate_of"] != dup["trace_id"]
    assert dup["similarity"] == pytest.approx(exact_jaccard(BASE, edited))
    assert rows["t2"]["is_near_dup"] == 0 and rows["t2"]["cluster_size"] == 1 and rows["t2"]["reason"] == "unique"
    assert rows["t0"]["cluster_id"] == rows["t1"]["cluster_id"] and rows["t0"]["cluster_size"] == 2


def test_pairs_below_the_threshold_stay_apart():
    changed = BASE.replace("48", "36").replace("24", "18").replace("72", "54").replace("none", "two")
    similarity = exact_jaccard(BASE, changed)
    assert similarity < 0.8
    rows = scored(table([BASE, changed]))
    assert rows["t0"]["is_near_dup"] == rows["t1"]["is_near_dup"] == 0
    lowered = scored(table([BASE, changed]), threshold=similarity - 0.01)
    assert sorted(r["is_near_dup"] for r in lowered.values()) == [0, 1]


def test_representative_is_correct_first_then_shortest_then_trace_id():
    longer = BASE + " Done."
    rows = scored(table([BASE, longer], correct=[0, 1]))
    assert rows["t0"]["duplicate_of"] == "t1" and rows["t1"]["is_near_dup"] == 0  # correct beats shorter
    rows = scored(table([longer, BASE]))
    assert rows["t0"]["duplicate_of"] == "t1"  # then the shortest
    rows = scored(table([BASE, BASE], ids=["b", "a"]))
    assert rows["b"]["duplicate_of"] == "a"  # then the smallest trace_id


def test_scope_prompt_never_pairs_different_questions():
    t = table([BASE, BASE], questions=["How many clips?", "How many pens?"])
    assert {r["is_near_dup"] for r in scored(t).values()} == {0}
    assert sorted(r["is_near_dup"] for r in scored(t, scope="dataset").values()) == [0, 1]
    # Questions equal up to case, spacing and number format are one question.
    t = table([BASE, BASE], questions=["How many  clips for $1,000?", "how many clips for $1000?"])
    assert sorted(r["is_near_dup"] for r in scored(t).values()) == [0, 1]


def test_many_copies_form_one_cluster():
    copies = [BASE.replace("herself", f"herself ({i % 7})") for i in range(600)]
    rows = scored(table(copies))
    leaders = {r["cluster_id"] for r in rows.values()}
    assert len(leaders) == 1 and {r["cluster_size"] for r in rows.values()} == {600}
    assert sum(r["is_near_dup"] for r in rows.values()) == 599


def test_missing_rationale_is_not_judged():
    rows = scored(table([BASE, None, "  "]))
    assert rows["t1"]["passed"] is None and rows["t1"]["reason"] == "no_rationale" and rows["t1"]["is_near_dup"] is None
    assert rows["t2"]["reason"] == "no_rationale" and rows["t0"]["passed"] is True


def test_bands_give_high_recall_at_the_threshold():
    bands, rows = lsh_bands(0.8, 128)
    assert bands * rows <= 128 and 1 - (1 - 0.8**rows) ** bands >= 0.99


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 0}, "threshold must be in"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"scope": "galaxy"}, "scope must be one of"),
        ({"shingle": 0}, "shingle must be at least 1"),
        ({"num_perm": 16, "bands": 32}, "cannot exceed num_perm"),
        ({"shingles": 3}, "unknown key 'shingles'"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(TracebankError, match=message):
        make_scorer(NearDuplicate, options)


def test_options_that_differ_from_defaults_are_part_of_the_stored_version():
    assert stored_version(NearDuplicate()) == NearDuplicate.version
    changed = stored_version(make_scorer(NearDuplicate, {"threshold": 0.7}))
    assert changed.startswith(NearDuplicate.version + "+") and changed != stored_version(
        make_scorer(NearDuplicate, {"threshold": 0.9})
    )
    with pytest.raises(TracebankError, match="options for 'near_dup', which this run does not score"):
        ScoreConfig("d", ("exact_dup",), {"near_dup": {"threshold": 0.7}})
    with pytest.raises(TracebankError, match="takes no options"):
        ScoreConfig("d", ("exact_dup",), {"exact_dup": {"threshold": 0.7}})


def test_texts_without_words_do_not_break_scoring():
    rows = scored(table(["...", "!!!", "Natalia sold 48 clips in May and more in June."]))
    assert rows["t2"]["is_near_dup"] == 0
    assert sorted([rows["t0"]["is_near_dup"], rows["t1"]["is_near_dup"]]) == [0, 1]  # two empty word sets are equal
