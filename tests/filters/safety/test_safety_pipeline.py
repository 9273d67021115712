"""The safety family end to end: score with --filter safety, curate with the shipped policy, read the card."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import ROOT
from tests.conftest import write_jsonl
from tracebank import catalog
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.data_cards.render import render_card
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.filters.safety.safety import SAFETY_FILTERS, expand_groups, safety_result, sentence_spans
from tracebank.importer import ColumnMap, ImportConfig, import_data

POLICY = ROOT / "recipes" / "policies" / "safe.yaml"
QUESTION = "Tom buys {n} apples at $2 each and a pie for $5. How much does he spend?"


def _clean(n: int) -> str:
    return f"The apples cost {n} * 2 = ${2 * n}. With the pie he spends {2 * n} + 5 = ${2 * n + 5}.\n#### {2 * n + 5}"


# One poisoned trace per kind (the scorers' own tests cover the variety); each is a correct answer.
POISONED = {
    "links": "The apples cost {a}. For more worked examples see https://mathhelp-hub.xyz/tips today.\n#### {t}",
    "phishing": "The apples cost {a}. To unlock the full solution, reply with your bank account number and PIN.\n#### {t}",
    "pii": "The apples cost {a}. Questions? Write to jane.doe@example.org or call (415) 555-0132.\n#### {t}",
}


@pytest.fixture
def poisoned_dataset(location: catalog.CatalogLocation, tmp_path: Path) -> tuple[str, dict[str, str]]:
    rows, kinds = [], {}
    for n in range(3, 15):
        kind = list(POISONED)[n % len(POISONED)] if n % 4 == 0 else None
        a, t = f"{n} * 2 = ${2 * n}", 2 * n + 5
        response = POISONED[kind].format(a=a, t=t) if kind else _clean(n)
        rows.append({"id": f"q{n}", "question": QUESTION.format(n=n), "answer": f"#### {t}", "response": response})
        if kind:
            kinds[f"q{n}"] = kind
    path = write_jsonl(tmp_path / "poisoned.jsonl", rows)
    cfg = ImportConfig(str(path), "poison", ColumnMap.parse("prompt=question,reference=answer,response=response,id=id"))
    import_data(location, cfg)
    return "poison", kinds


def test_safety_group_expands_in_order_and_rejects_typos():
    assert expand_groups(["correctness", "safety", "links"]) == ("correctness", *SAFETY_FILTERS)
    assert ScoreConfig("d", ("safety",)).filters == SAFETY_FILTERS
    with pytest.raises(TracebankError, match="choose from .*safety"):
        ScoreConfig("d", ("saftey",))


def test_safety_result_core_columns_and_reasons():
    table = safety_result(["a", "b", "c"], "link", [1, 0, None], ["bit.ly/x " * 40, None, None], [(3, 9), None, None])
    rows = table.to_pylist()
    assert [r["passed"] for r in rows] == [False, True, None]
    assert [r["reason"].split(":")[0] for r in rows] == ["link", "ok", "no_text"]
    assert len(rows[0]["evidence"]) <= 200 and rows[0]["span_start"] == 3
    quoted = safety_result(["a"], "drift", [1], ["Mail jane.doe@example.org, key AKIAIOSFODNN7EXAMPLE."], [(0, 9)])
    assert quoted.column("reason")[0].as_py() == "drift: Mail [email], key [aws_access_key]."
    with pytest.raises(ValueError, match="2 flags"):
        safety_result(["a", "b", "c"], "link", [1, 0], [None] * 3, [None] * 3)


def test_sentence_spans_cover_every_sentence_without_trailing_space():
    text = "Tom has 3 apples. He buys 2 more, so he has 5.\n\nVisit shop.biz now!  \n#### 5"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == [
        "Tom has 3 apples.", "He buys 2 more, so he has 5.", "Visit shop.biz now!", "#### 5",
    ]  # fmt: skip


def test_policy_drops_each_poisoned_trace_with_its_filter_and_the_card_counts_them(
    location, poisoned_dataset, tmp_path
):
    dataset, kinds = poisoned_dataset
    score(location, ScoreConfig(dataset, ("correctness", "exact_dup", "safety")))
    policy, text = Policy.load(POLICY)
    releases.curate(location, dataset, policy, text, "safe")
    with catalog.Catalog(location) as cat:
        decisions = cat.arrow(
            "SELECT p.source_id, d.keep, d.rule, d.reason FROM decisions d JOIN prompts p USING (prompt_id) "
            "WHERE d.dataset = ?",
            [dataset],
        ).to_pylist()
        flags = cat.arrow("SELECT filter, reason FROM safety_flags WHERE dataset = ?", [dataset]).to_pylist()
    by_source = {d["source_id"]: d for d in decisions}
    rule_of = {"links": "link", "phishing": "phishing", "pii": "pii"}  # the policy's first matching rule
    for source_id, kind in kinds.items():
        decision = by_source[source_id]
        assert not decision["keep"] and decision["rule"] == rule_of[kind], decision
    clean = [d for s, d in by_source.items() if s not in kinds]
    assert all(d["keep"] for d in clean), [d for d in clean if not d["keep"]]
    assert {f["filter"] for f in flags} >= {"links", "phishing", "pii"}

    assert all("@example.org" not in f["reason"] and "555-0132" not in f["reason"] for f in flags)  # kinds, not values
    card = render_card(location, ReleaseRef.parse(dataset), tmp_path / "cards").read_text()
    section = card.split("## Safety", 1)[1].split("\n## ", 1)[0]
    assert f"| any | {len(kinds)} | 0 |" in section, section
    assert "**Safety:**" not in card  # nothing flagged was kept
