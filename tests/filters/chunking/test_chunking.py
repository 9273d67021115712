"""The chunking filter: exact spans, boundaries, kinds on hand-labelled traces, step roll-ups, the runner."""

import orjson
import pyarrow as pa
import pytest
import yaml

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.errors import TracebankError
from tracebank.filters.base import make_scorer
from tracebank.filters.chunking.chunking import Chunking, ChunkingOptions
from tracebank.filters.chunking.segment import units
from tracebank.filters.runner import ScoreConfig, score

PLAIN = ChunkingOptions(embeddings=False)

GSM8K = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)
LONG_COT = (
    "  Okay, let me think.\r\n\r\n## Setting up\n\nWe need the area first:\n"
    "$$A = \\frac{1}{2} \\cdot 6 \\cdot 4. Then 12.$$\n"
    "1. Compute the base. It is 6.\n2. Compute the height: 4.\n\n"
    "```python\nx = 6 * 4  # Not a boundary. Really.\nprint(x / 2)\n```\n"
    "Wait, let me verify: 6 × 4 / 2 = 12. ✓ Ünïcödé stays intact…\n\nSo the answer is \\boxed{12}.   \n"
)
ODD = ["x", "\n\n\nA\n\n", "No full stop at all and then Some Name appears", "A: 5", "é" * 300 + ". " + "b" * 50]


def table(rationales, questions=None, correct=None, prompt_ids=None, task="math"):
    n = len(rationales)
    questions = questions or ["How many clips did Natalia sell?"] * n
    return pa.table({
        "trace_id": [f"t{i:03d}" for i in range(n)],
        "prompt_id": prompt_ids or [f"p-{q}" for q in questions],
        "messages": [[{"role": "user", "content": q}] for q in questions],
        "rationale": rationales, "correct": pa.array(correct or [None] * n, pa.int8()), "task": [task] * n,
    })  # fmt: skip


def chunked(rationales, options=PLAIN, **kwargs):
    scorer = Chunking(options)
    result = scorer.score(table(rationales, **kwargs)).to_pylist()
    return result, scorer.outputs()["chunks"].to_pylist()


@pytest.mark.parametrize("text", [GSM8K, LONG_COT, *ODD])
def test_chunks_rebuild_the_rationale_byte_for_byte(text):
    _, chunks = chunked([text])
    assert "".join(c["text"] for c in chunks).encode() == text.encode()
    assert [c["chunk_idx"] for c in chunks] == list(range(len(chunks)))
    for chunk, following in zip(chunks, [*chunks[1:], None], strict=True):
        assert text[chunk["char_start"] : chunk["char_end"]] == chunk["text"] != ""
        assert chunk["char_end"] == (following["char_start"] if following else len(text))
    assert chunks[0]["char_start"] == 0


def test_no_boundary_inside_code_display_math_or_annotations():
    for unit in units(LONG_COT):
        for block in ("$$A = ", "```python", "<<48"):
            start = LONG_COT.find(block)
            if start >= 0:
                end = LONG_COT.find("$$" if block.startswith("$$") else "```", start + 3) + 2
                assert not start < unit.start < end, LONG_COT[unit.start : unit.start + 20]
    assert not any(u.start in range(GSM8K.find("<<"), GSM8K.find(">>")) for u in units(GSM8K))


@pytest.mark.parametrize("joiner", [" ", ""])
def test_lines_are_found_again_when_line_breaks_are_lost(joiner):
    lines = [
        "He writes each friend 3*2=<<3*2=6>>6 pages a week",
        "So he writes 6*2=<<6*2=12>>12 pages every week",
        "That means he writes 12*52=<<12*52=624>>624 pages a year",
        "#### 624",
    ]
    _, chunks = chunked([joiner.join(lines)])
    assert [c["text"].strip() for c in chunks] == lines


def test_a_long_unbroken_text_is_cut_to_the_budget():
    text = ", so ".join(f"item {i} costs {i} dollars" for i in range(80)) + "."
    _, chunks = chunked([text], ChunkingOptions(embeddings=False, max_tokens=60))
    assert len(chunks) > 3 and max(c["tokens"] for c in chunks) <= 90


# Hand-labelled: one line per chunk, with the kind a reader gives it.
QUESTION = "A shop sells pens for $3 each. Tom buys 4 pens and pays with a $20 bill. How much change does he get?"
LABELLED = [
    ("The problem asks how much change Tom gets after buying the pens.\n", "restate"),
    ("Let's solve this step by step.\n", "summary"),
    ("Tom buys 4 pens at $3 each, so he spends 4 * 3 = $12.\n", "compute"),
    ("Because he pays with a bill larger than what he spends, he gets money back.\n", "reasoning"),
    ("His change is 20 - 12 = $8.\n", "compute"),
    ("Let me check: 12 + 8 = 20, which matches the bill.\n", "verify"),
    ("So Tom gets $8 back.\n", "summary"),
    ("#### 8", "answer"),
]
LABELLED_2 = [
    ("Tom buys 4 pens and each pen costs $3.\n", "restate"),
    ("Let x be the change he gets.\n", "reasoning"),
    ("Then x = 20 - 4 * 3 = 8 dollars.\n", "compute"),
    ("The answer is 8.", "answer"),
]


@pytest.mark.parametrize("labelled", [LABELLED, LABELLED_2])
def test_kinds_match_hand_labels(labelled):
    _, chunks = chunked(["".join(text for text, _ in labelled)], questions=[QUESTION])
    assert [(c["text"], c["kind"]) for c in chunks] == labelled
    features = orjson.loads(chunks[0]["features"])
    assert {"rule", "tokens", "steps", "new_numbers", "question_overlap"} <= set(features)


def test_step_roll_up_names_the_first_wrong_step():
    text = "She has 3 + 4 = 7 pens.\nShe buys 2 * 5 = 11 more.\nNow 7 + 11 = 18 pens.\n#### 18"
    (row,), chunks = chunked([text], correct=[1])
    assert (row["checked_steps"], row["wrong_steps"], row["first_wrong_step"], row["first_wrong_chunk"]) == (3, 1, 1, 1)
    assert row["step_correctness"] == pytest.approx(2 / 3)
    assert row["wrong_step"] == "2 * 5 = 11 (is 10)"
    assert (row["reason"], row["passed"], row["right_answer_wrong_step"]) == ("right_answer_wrong_step", False, 1)
    assert [(c["checked_steps"], c["wrong_steps"], c["score"]) for c in chunks] == [(1, 0, 1.0), (1, 1, 0.0),
                                                                                      (1, 0, 1.0), (0, 0, 1.0)]  # fmt: skip


@pytest.mark.parametrize(
    ("correct", "reason", "flag"), [(0, "wrong_step", 0), (None, "wrong_step", None), (1, "right_answer_wrong_step", 1)]
)
def test_right_answer_wrong_step_needs_a_verified_answer(correct, reason, flag):
    (row,), _ = chunked(["So 2 + 2 = 5.\n#### 5"], correct=[correct])
    assert (row["reason"], row["right_answer_wrong_step"]) == (reason, flag)


def test_code_traces_are_chunked_but_not_checked():
    (row,), chunks = chunked(["Compute it.\n```python\nx = 2 + 2 == 5\n```\nDone: 2 + 2 = 5"], task="code")
    assert row["checked_steps"] == 0 and row["reason"] == "ok" and chunks


def test_traces_without_rationale_are_not_judged():
    rows, chunks = chunked(["", None, "   ", GSM8K])
    assert [(r["reason"], r["passed"]) for r in rows] == [("no_rationale", None)] * 3 + [("ok", True)]
    assert {c["trace_id"] for c in chunks} == {"t003"}


def test_repeats_inside_a_trace_and_boilerplate_across_questions():
    loop = "We add the two numbers together to get the total amount.\n"
    (row,), chunks = chunked(["First we look at the two numbers given.\n" + loop * 3 + "#### 5"])
    assert [c["redundant_of"] for c in chunks] == [None, None, 1, 1, None]
    assert (row["redundant_chunks"], row["reason"], row["passed"]) == (2, "repetitive", False)
    assert chunks[2]["score"] == 0.0

    shared = "Let's think step by step about this problem.\n"
    texts = [f"{shared}So {i} + 1 = {i + 1}.\n#### {i + 1}" for i in range(6)]
    rows, chunks = chunked(texts, questions=[f"What is {i} + 1?" for i in range(6)])
    assert [c["boilerplate"] for c in chunks if c["text"] == shared] == [True] * 6
    assert all(r["boilerplate_chunks"] == 1 for r in rows)
    assert not any(c["boilerplate"] for c in chunks if c["kind"] == "answer")  # "#### 5" for many questions is fine


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_tokens": 50, "max_tokens": 10}, "min_tokens <= max_tokens"),
        ({"min_tokens": 0}, "min_tokens <= max_tokens"),
        ({"window": 0}, "window must be at least 1"),
        ({"boundary_cost": -1}, "boundary_cost must be a number >= 0"),
        ({"repeat_threshold": 0}, r"repeat_threshold must be in \(0, 1\]"),
        ({"restate_similarity": 2}, r"restate_similarity must be in \(0, 1\]"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"model": "no-such-model"}, "unknown embedding model 'no-such-model'"),
        ({"tokens": 5}, "unknown key 'tokens'"),
    ],
)
def test_options_are_checked(options, message):
    with pytest.raises(TracebankError, match=message):
        make_scorer(Chunking, options)


def test_score_fills_chunks_reruns_write_nothing_and_policies_see_step_scores(location, math_dataset):
    text = "Tom has 3 + 4 = 8 apples.\nSo he has 8 apples.\n#### 8"
    build(location, BuildConfig(math_dataset, samples=2), FakeTeacher(text=text))
    cfg = ScoreConfig(math_dataset, ("correctness", "chunking"), {"chunking": {"embeddings": False}})
    first = score(location, cfg)
    assert {s.filter: s.changed for s in first.filters} == {"correctness": 12, "chunking": 12}
    with catalog.Catalog(location) as cat:
        kinds = cat.sql("SELECT kind, wrong_steps FROM chunks WHERE trace_id = (SELECT min(trace_id) FROM chunks) "
                        "ORDER BY chunk_idx")  # fmt: skip
        assert kinds.rows() == [("compute", 1), ("summary", 0), ("answer", 0)]
        assert cat.scalar("SELECT count(DISTINCT trace_id) FROM chunks") == 12
        reasons = cat.sql(
            "SELECT reason, count(DISTINCT trace_id) AS n FROM scores WHERE filter = 'chunking' GROUP BY ALL"
        )
        assert reasons.rows() == [("wrong_step", 12)]  # "#### 8" answers no question right
    again = score(location, cfg)
    assert again.snapshot is None or all(s.changed == 0 for s in again.filters)
    policy = {"name": "steps", "rules": [{"name": "wrong_step", "when": "chunking.wrong_steps > 0", "action": "drop"}],
              "splits": {"train": 1.0}}  # fmt: skip
    releases.curate(location, math_dataset, Policy.from_dict(policy), yaml.safe_dump(policy), "steps")
    with catalog.Catalog(location) as cat:
        assert cat.scalar("SELECT count(*) FROM decisions WHERE rule = 'wrong_step' AND NOT keep") == 12


@pytest.mark.slow
def test_with_embeddings_kinds_hold_and_similarities_are_kept():
    texts = ["".join(text for text, _ in LABELLED), GSM8K]
    questions = [QUESTION, "How many clips did Natalia sell in April and May?"]
    _, chunks = chunked(texts, ChunkingOptions(), questions=questions)
    assert [c["kind"] for c in chunks if c["trace_id"] == "t000"] == [kind for _, kind in LABELLED]
    features = orjson.loads(chunks[0]["features"])
    assert set(features["exemplar_similarity"]) == {"restate", "reasoning", "verify", "summary"}
    assert -1 <= features["prompt_similarity"] <= 1
    _, again = chunked(texts, ChunkingOptions(), questions=questions)
    assert again == chunks  # the same cuts, kinds and features every run
