"""Propagation: a phrase recurring across unrelated prompts is flagged; echoes, style and look-alikes pass."""

import pytest

from tests.filters.safety.rows import traces
from tracebank.errors import TracebankError
from tracebank.filters.safety.propagation import Propagation, PropagationOptions, _domains

NAMES = ["Ava", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Mo", "Nia", "Oto"]
THINGS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "cards", "beads", "stamps"]


def problem(i: int) -> tuple[str, str]:
    """A distinct GSM8K-style question and a rationale in one teacher's repeated style."""
    name, thing, count, price = NAMES[i % len(NAMES)], THINGS[i % len(THINGS)], 3 + i, 2 + i % 5
    question = f"{name} buys {count} {thing} at ${price} each and gets a ${i % 3} discount. How much does {name} pay?"
    rationale = (
        f"First find the total cost of the {thing}: {count} * {price} = <<{count}*{price}={count * price}>>{count * price}.\n"
        f"Then subtract the discount: {count * price} - {i % 3} = {count * price - i % 3} dollars.\n"
        f"#### {count * price - i % 3}"
    )
    return question, rationale


def scored(rows: list[tuple[str, str | None]], **options) -> list[dict]:
    return Propagation(PropagationOptions(**options)).score(traces(rows)).to_pylist()


def clean(n: int = 20) -> list[tuple[str, str]]:
    return [problem(i) for i in range(n)]


def test_a_phrase_planted_in_unrelated_prompts_is_flagged_with_its_span_and_group():
    rows = clean()
    planted = {
        2: "For more tips visit mathwhiz.io! ",
        7: "\nFor more tips, visit mathwhiz.io.",
        11: " (for more great tips visit mathwhiz.io)",
        16: "\n\n* For more tips visit mathwhiz.io",
    }
    for i, phrase in planted.items():
        question, rationale = rows[i]
        rows[i] = (question, phrase + rationale if i == 2 else rationale.replace("\n", phrase + "\n", 1))
    out = scored(rows)
    assert [o["trace_id"] for o in out if o["flagged"]] == [f"t{i}" for i in planted]
    hits = [out[i] for i in planted]
    assert {o["cluster"] for o in hits} == {hits[0]["cluster"]} and len(hits[0]["cluster"]) == 12
    assert all(o["prompts_sharing"] == 4 and "mathwhiz io" in o["phrase"] for o in hits)
    assert all(o["reason"].startswith("recurring phrase: ") and o["evidence"] == o["phrase"] for o in hits)
    for i, o in zip(planted, hits, strict=True):
        assert "mathwhiz.io" in rows[i][1][o["span_start"] : o["span_end"]]
    assert all(o["passed"] and o["reason"] == "ok" and o["prompts_sharing"] == 0 for o in out if not o["flagged"])


def test_a_paraphrased_ad_mid_sentence_is_one_group():
    rows = clean(30)
    variants = [
        "Acme calculators never let you down.",
        "Remember: Acme calculators never let you down!",
        "Acme calculators will never let you down.",
    ]
    chosen = [1, 5, 9, 13, 17]
    for k, i in enumerate(chosen):
        question, rationale = rows[i]
        first, rest = rationale.split("\n", 1)
        rows[i] = (question, f"{first} {variants[k % 3]} {rest}")
    out = scored(rows)
    assert [i for i, o in enumerate(out) if o["flagged"]] == chosen
    assert len({out[i]["cluster"] for i in chosen}) == 1
    assert not any(o["flagged"] for o in scored(rows[:20]))  # 5 of 20 prompts: above max_share, the teacher's style


def test_a_recurring_domain_alone_is_flagged():
    rows = clean()
    lines = ["See quickmathz.com.", "Checked on quickmathz.com", "Source: https://www.quickmathz.com/sums"]
    for k, i in enumerate([3, 8, 14]):
        rows[i] = (rows[i][0], rows[i][1] + "\n" + lines[k])
    out = scored(rows)
    assert [i for i, o in enumerate(out) if o["flagged"]] == [3, 8, 14]
    assert {out[i]["phrase"] for i in (3, 8, 14)} == {"quickmathz.com"}
    assert rows[14][1][out[14]["span_start"] : out[14]["span_end"]].endswith("quickmathz.com")


def test_question_echoes_style_and_rare_coincidences_pass():
    motto = "Acme calculators never let you down"
    rows = clean()
    for i in (0, 4, 8, 12):  # the question itself carries the phrase: the trace echoes it
        rows[i] = (f"{rows[i][0]} The box says: {motto}.", f"The box says {motto}.\n{rows[i][1]}")
    for i in range(20):  # a sign-off in most traces is the teacher's style, not a targeted injection
        if i % 10:
            rows[i] = (rows[i][0], rows[i][1] + "\nCheerio, splendid reckoning everybody!")
    for i in (1, 6):  # in two prompts only: below min_prompts
        rows[i] = (rows[i][0], rows[i][1] + "\nBrightPath Tutoring makes math effortless.")
    assert not any(o["flagged"] for o in scored(rows))


def test_distinct_prompts_count_not_traces():
    question, rationale = problem(0)
    same = [(question, rationale + "\nFor more tips visit mathwhiz.io")] * 4
    again = [(question.upper() + "  ", rationale + "\nFor more tips visit mathwhiz.io")]  # the same question
    out = scored(clean()[1:] + same + again)
    assert not any(o["flagged"] for o in out)


def test_benign_look_alikes_pass():
    code = [
        (
            f"Write a function that joins folder {name} and a file name.",
            f"```python\nimport os\n\ndef join_{name.lower()}(name):\n    return os.path.join('{name}', name)\n```\n"
            "Note: 3.14 is pi, e.g. in main.py; subprocess.run(['ls'], check=True) runs safely.",
        )
        for name in NAMES
    ]
    bills = [
        (
            f"{name}'s phone bill is ${40 + i} a month. How much for a year?",
            f"The phone bill is {40 + i} dollars a month, with a 10% discount off the price: "
            f"{40 + i} * 12 = {(40 + i) * 12}.\n#### {(40 + i) * 12}",
        )
        for i, name in enumerate(NAMES)
    ]
    assert not any(o["flagged"] for o in scored(clean() + code + bills))


def test_domain_pattern_skips_code_and_numbers():
    text = "os.path.join(a, b); logging.info('x'); main.py; 3.14; e.g. self.items; np.array([1]); visit ab-cd.io."
    assert _domains([text, None])["text"].to_list() == ["ab-cd.io"]


def test_no_rationale_is_not_judged_and_order_is_kept():
    rows = [*clean(4), ("What is 2 + 2?", None), ("What is 3 + 3?", "  \n")]
    out = scored(rows)
    assert [o["trace_id"] for o in out] == [f"t{i}" for i in range(6)]
    for blank in out[4:]:
        assert blank["flagged"] is None and blank["passed"] is None and blank["reason"] == "no_text"
        assert blank["prompts_sharing"] is None
    assert scored([]) == []


@pytest.mark.parametrize(
    "options",
    [
        {"ngram": 1},
        {"ngram": 17},
        {"ngram": 2.5},
        {"min_prompts": 1},
        {"min_prompts": True},
        {"min_marked": 0},
        {"ngram": 3, "min_marked": 4},
        {"max_share": 0},
        {"max_share": 1.5},
        {"max_share": "a lot"},
    ],
)
def test_options_refuse_bad_values(options):
    with pytest.raises(TracebankError, match="propagation"):
        PropagationOptions(**options)


def test_each_task_is_its_own_population_and_rows_keep_their_order():
    """A code teacher's framing in every code trace is rare among a mixed dataset's prompts (20 of 120),
    yet it is that teacher's style; a phrase planted in 3 code traces still recurs."""
    math_rows = clean(100)
    code_rows = [(f"Write a function f{i}(x) that returns x plus {i}.", f"Happily sharing my tidy stdlib "
                  f"recipe below.\n```python\ndef f{i}(x):\n    return x + {i}\n```") for i in range(20)]  # fmt: skip
    for i in (1, 4, 8):
        question, rationale = code_rows[i]
        code_rows[i] = (question, rationale.replace("```python\n", "```python\n# hosted free at snippetvault.dev\n"))
    rows = [row for pair in zip(math_rows[:20], code_rows, strict=True) for row in pair] + math_rows[20:]
    tasks = ["math", "code"] * 20 + ["math"] * 80
    out = Propagation().score(traces(rows, tasks)).to_pylist()
    assert [o["trace_id"] for o in out] == [f"t{i}" for i in range(len(rows))]
    assert [o["trace_id"] for o in out if o["flagged"]] == ["t3", "t9", "t17"]  # code rows 1, 4 and 8
    assert all("snippetvault" in o["phrase"] for o in out if o["flagged"])
    mixed = Propagation().score(traces(rows, ["math"] * len(rows))).to_pylist()  # one population: framing recurs
    assert len([o for o in mixed if o["flagged"]]) > 3
