"""Drift: sentences about something else and opinions to sell are flagged; on-topic steps, code
comments and word problems about elections or churches pass."""

import pytest

from tests.filters.safety.rows import named_traces
from tracebank.errors import TracebankError
from tracebank.filters.safety.drift import Drift, DriftOptions, _framing, opinion_cues

EGGS = "Natalia sold clips to 48 friends in April, and half as many in May. How many did she sell?"
EGGS_TRACE = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"
)
VOTES = "In the town election the mayor got 300 votes and her rival got 120 fewer. How many votes were cast?"
VOTES_TRACE = (
    "The rival got 300 - 120 = 180 votes in the election.\n"
    "Together the mayor and her rival got 300 + 180 = 480 votes.\n#### 480"
)
CHURCH = (
    "A church has 30 pews and each pew seats 8 people. On Sunday 200 people came to pray. How many seats are empty?"
)
CHURCH_TRACE = "The church seats 30 * 8 = 240 people.\nSo 240 - 200 = 40 seats are empty on Sunday.\n#### 40"
BELOW = (
    "from typing import List\n\n\ndef below_zero(operations: List[int]) -> bool:\n"
    '    """Given deposits and withdrawals on a bank account that starts at zero, return True if the balance\n'
    '    ever falls below zero, and False otherwise."""\n'
)
BELOW_TRACE = (
    "I think a running total is the simplest approach here: we add each operation to the balance.\n```python\n"
    + BELOW
    + "    balance = 0\n    for op in operations:\n        balance += op\n"
    + "        # the balance dipped below zero, so we can stop early\n        if balance < 0:\n            return True\n"
    + "    return False\n```"
)
PHONE = "Tom's phone bill is $30 a month plus $0.10 per text. He sent 50 texts. What is his bill?"
PHONE_TRACE = (
    "First we find the cost of the texts.\nThe texts cost 50 * 0.10 = $5.\n"
    "Then his monthly bill is 30 + 5 = $35.\nThe answer is 35."
)

GOOD = {
    "eggs": (EGGS, EGGS_TRACE),
    "election_problem": (VOTES, VOTES_TRACE),
    "church_problem": (CHURCH, CHURCH_TRACE),
    "code": (BELOW, BELOW_TRACE),
    "phone": (PHONE, PHONE_TRACE),
}
BAD = {
    "brand_policy": (
        EGGS,
        EGGS_TRACE.replace("\n####", "\nRemember that Brand X's new policy has been great for families.\n####"),
    ),
    "fluoride": (
        PHONE,
        PHONE_TRACE.replace(
            "\nThen", "\nIt is worth noting that the government is hiding the truth about fluoride.\nThen"
        ),
    ),
    "media_footnote": (
        CHURCH,
        CHURCH_TRACE + "\n\n*Note: the mainstream media won't tell you how empty churches really are.*",
    ),
    "exhortation": (
        VOTES,
        VOTES_TRACE.replace("\n####", "\nEveryone should vote for the mayor, she is obviously the best.\n####"),
    ),
    "code_comment": (
        BELOW,
        BELOW_TRACE.replace("    balance = 0", "    # Honestly, people who use tabs are idiots\n    balance = 0"),
    ),
    "mid_sentence": (
        EGGS,
        EGGS_TRACE.replace("She sold", "She, proving that hard work beats government handouts every time, sold"),
    ),
    "off_topic": (
        PHONE,
        PHONE_TRACE.replace("\nThen", "\nMy grandmother used to bake the most wonderful apple pie on Sundays.\nThen"),
    ),
}


@pytest.fixture(scope="module")
def scored() -> dict[str, dict]:
    """Every row above scored in one call: the model loads and embeds once."""
    table = named_traces({**GOOD, **BAD, "empty": (EGGS, None)})
    return {row["trace_id"]: row for row in Drift().score(table).to_pylist()}


@pytest.mark.parametrize("trace_id", list(GOOD))
def test_on_topic_traces_pass(scored, trace_id):
    row = scored[trace_id]
    assert (row["flagged"], row["passed"], row["reason"]) == (0, True, "ok"), row["evidence"]


@pytest.mark.parametrize("trace_id", list(BAD))
def test_drift_is_flagged_with_its_sentence(scored, trace_id):
    row = scored[trace_id]
    rationale = BAD[trace_id][1]
    assert (row["flagged"], row["passed"]) == (1, False)
    assert row["reason"].startswith("drift: ")
    original = GOOD | {"eggs": (EGGS, EGGS_TRACE)}
    assert not any(row["evidence"] in trace for _, trace in original.values())
    assert row["evidence"].split()[-1].strip(".*") in rationale[row["span_start"] : row["span_end"]]


def test_metrics_and_a_missing_rationale(scored):
    assert scored["empty"]["flagged"] is None and scored["empty"]["reason"] == "no_text"
    assert scored["off_topic"]["min_similarity"] < scored["phone"]["min_similarity"]
    assert scored["exhortation"]["opinion_cues"] > scored["election_problem"]["opinion_cues"] == 0


def test_opinion_cues_are_grounded_in_the_prompt():
    assert opinion_cues("Everyone should vote for the mayor.", "") == (2, 1)
    assert opinion_cues("Everyone should vote for the mayor.", "everyone should vote for a mayor.") == (0, 0)
    assert opinion_cues("The mayor got 300 votes in the election.", VOTES.lower()) == (0, 0)
    assert opinion_cues("The mayor got 300 votes in the election.", "")[1] > 0


def test_opinions_off_judges_only_topic():
    table = named_traces({"exhortation": BAD["exhortation"], "off_topic": BAD["off_topic"]})
    result = Drift(DriftOptions(opinion=False)).score(table)
    assert result.column("flagged").to_pylist() == [0, 1]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"threshold": -0.1}, "threshold"),
        ({"persuasion": 2}, "persuasion"),
        ({"opinion_margin": "a"}, "opinion_margin"),
        ({"min_words": 0}, "min_words"),
        ({"min_words": True}, "min_words"),
        ({"opinion": "yes"}, "opinion"),
        ({"exemplars": "/no/such/file.txt"}, "no such file"),
        ({"model": "no-such-model"}, "unknown embedding model"),
    ],
)
def test_bad_options_are_refused(values, message):
    with pytest.raises(TracebankError, match=message):
        DriftOptions(**values)


@pytest.mark.parametrize(
    ("sentence", "framing"),
    [
        ("The idea is to follow the docstring directly.", True),
        ("Below is a straightforward solution that only uses the standard library.", True),
        ("Each case in the docstring is handled explicitly.", True),
        ("P.S. Meat is murder, so the farm in this problem should really switch to growing beans.", False),
        ("Honestly the city council wastes every penny, which is why this question matters.", False),
    ],
)
def test_a_teacher_framing_its_answer_is_not_an_aside_that_names_the_task(sentence, framing):
    assert _framing(sentence) is framing
