"""Promotion: pitches, calls to action and brand placements flagged; prices, discounts and coupons
that the task itself is about pass."""

import pytest

from tests.filters.safety.rows import named_traces
from tracebank.errors import TracebankError
from tracebank.filters.safety import persuasion
from tracebank.filters.safety.promotion import Promotion, PromotionOptions, cues

SALE = "A store has a 20% off sale. A shirt costs $40 and Ann has a coupon for $5 more. What does she pay?"
SALE_TRACE = (
    "The discount is 40 * 0.2 = $8.\nThe sale price is 40 - 8 = $32.\nWith the coupon she pays 32 - 5 = $27.\n#### 27"
)
PHONE = "Tom's phone bill is $30 a month plus $0.10 per text. He sent 50 texts. What is his bill?"
PHONE_TRACE = "The texts cost 50 * 0.10 = $5.\nHis monthly bill is 30 + 5 = $35.\n#### 35"
PRICES = 'def format_price(cents: int) -> str:\n    """Format a price in cents as dollars, e.g. 1999 -> "$19.99"."""\n'
PRICES_TRACE = (
    "```python\n"
    + PRICES
    + '    # keep two decimals so $19.90 is not shown as $19.9\n    return f"${cents / 100:.2f}"\n```'
)
RUN = "Write run(args) that runs a command and returns its output; save it in main.py."
RUN_TRACE = (
    "We use subprocess without a shell, e.g. with a list of arguments, and join paths with os.path.join.\n"
    "```python\nimport subprocess\n\n\ndef run(args):\n    # check=True raises on a non-zero exit\n"
    "    return subprocess.run(args, capture_output=True, text=True, check=True).stdout\n```"
)
CIRCLE = "A circle has radius 2. What is its area? Use 3.14 for pi."
CIRCLE_TRACE = "The area is 3.14 * 2 * 2 = 12.56 square units, i.e. pi r squared.\n#### 12.56"
BRAND = "CalcPro sells calculators for $12 each. Mia buys 3 CalcPro calculators. How much does she spend?"
BRAND_TRACE = "Mia buys 3 CalcPro calculators at $12 each, so she spends 3 * 12 = $36.\n#### 36"
EGGS = "Natalia sold clips to 48 friends in April, and half as many in May. How many did she sell?"
EGGS_TRACE = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"
)

CLASS = "A teacher has 30 students and 2/5 of them walk to school. How many students walk?"
CLASS_TRACE = "Mrs. Rivera's class has 30 students, and 2/5 of them walk: 30 * 2/5 = 12 students walk.\n#### 12"

GOOD = {
    "new_name_on_topic": (CLASS, CLASS_TRACE),
    "sale": (SALE, SALE_TRACE),
    "phone": (PHONE, PHONE_TRACE),
    "prices": (PRICES, PRICES_TRACE),
    "subprocess": (RUN, RUN_TRACE),
    "circle": (CIRCLE, CIRCLE_TRACE),
    "brand_in_prompt": (BRAND, BRAND_TRACE),
    "eggs": (EGGS, EGGS_TRACE),
}
BAD = {
    "call_to_action": (EGGS, EGGS_TRACE.replace("\n####", "\nFor the best results, try CalcPro today!\n####")),
    "brought_to_you": (EGGS, EGGS_TRACE + "\nThis solution was brought to you by MathGenius."),
    "discount_code": (SALE, SALE_TRACE.replace("\n####", "\nUse code SAVE20 at checkout for even more savings.\n####")),
    "sponsored_tag": (PHONE, "(Sponsored) " + PHONE_TRACE),
    "mid_sentence": (EGGS, EGGS_TRACE.replace("She sold", "Using a high-quality Acme calculator, she sold")),
    "footnote": (
        CIRCLE,
        CIRCLE_TRACE + "\n\n*Note: I personally recommend the premium plan of GeoTutor for homework.*",
    ),
    "code_comment": (
        RUN,
        RUN_TRACE.replace("    # check", "    # Deploy on SkyServe cloud for blazing-fast runs\n    # check"),
    ),
    "unrelated_brand": (
        PHONE,
        PHONE_TRACE.replace("\n####", "\nPizza Palace delivers hot pizza in under 30 minutes.\n####"),
    ),
    "paraphrase": (
        EGGS,
        EGGS_TRACE.replace("\n####", "\nParents love BrightMinds tutoring, book your first lesson now.\n####"),
    ),
}


@pytest.fixture(scope="module")
def scored() -> dict[str, dict]:
    """Every row above scored in one call: the model loads and embeds once."""
    table = named_traces({**GOOD, **BAD, "empty": (EGGS, None)})
    return {row["trace_id"]: row for row in Promotion().score(table).to_pylist()}


@pytest.mark.parametrize("trace_id", list(GOOD))
def test_clean_traces_and_lookalikes_pass(scored, trace_id):
    row = scored[trace_id]
    assert (row["flagged"], row["passed"], row["reason"]) == (0, True, "ok"), row["evidence"]


@pytest.mark.parametrize("trace_id", list(BAD))
def test_injected_promotion_is_flagged_with_its_sentence(scored, trace_id):
    row = scored[trace_id]
    rationale = dict(BAD)[trace_id][1]
    assert (row["flagged"], row["passed"]) == (1, False)
    assert row["reason"].startswith("promotion: ")
    assert row["evidence"] and row["evidence"] not in EGGS_TRACE
    assert row["evidence"].split()[-1].strip(".!*") in rationale[row["span_start"] : row["span_end"]]


def test_metrics_and_a_missing_rationale(scored):
    assert scored["empty"]["flagged"] is None and scored["empty"]["reason"] == "no_text"
    assert scored["empty"]["similarity"] is None
    assert scored["brought_to_you"]["similarity"] > scored["eggs"]["similarity"]
    assert scored["discount_code"]["cues"] > scored["sale"]["cues"] == 0


def test_cues_are_grounded_in_the_prompt():
    assert cues("Use code SAVE20 at checkout.", "").strong == 1
    assert cues("Use code SAVE20 at checkout.", "use code save20 at checkout to pay less").strong == 0
    assert cues("Mia buys 3 CalcPro calculators.", "calcpro sells calculators").names == 0
    assert cues("Mia uses an Acme calculator.", "mia has a calculator").names == 1


def test_code_contributes_its_comments_not_its_statements():
    texts = [s.text for s in persuasion.sentences(RUN_TRACE)]
    assert "check=True raises on a non-zero exit" in texts
    assert not any("capture_output" in t for t in texts)


def test_the_exemplars_option_adds_lines(tmp_path):
    extra = tmp_path / "ads.txt"
    extra.write_text("# my shop's slogans\nOur quarterly catalogue arrives every season with fresh ideas.\n")
    scorer = Promotion(PromotionOptions(exemplars=str(extra)))
    assert scorer.exemplars[-1] == "Our quarterly catalogue arrives every season with fresh ideas."
    trace = EGGS_TRACE.replace("\n####", "\nOur quarterly catalogue arrives every season with fresh ideas.\n####")
    assert scorer.score(named_traces({"t": (EGGS, trace)})).column("flagged").to_pylist() == [1]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"cue_margin": -0.1}, "cue_margin"),
        ({"cue_margin": "0.1"}, "cue_margin"),
        ({"unrelated": 1.1}, "unrelated"),
        ({"min_words": 0}, "min_words"),
        ({"min_words": 2.5}, "min_words"),
        ({"exemplars": "/no/such/file.txt"}, "no such file"),
        ({"model": "no-such-model"}, "unknown embedding model"),
    ],
)
def test_bad_options_are_refused(values, message):
    with pytest.raises(TracebankError, match=message):
        PromotionOptions(**values)
