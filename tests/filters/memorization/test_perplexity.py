"""Perplexity: the robust z-score rule (no model), the options, and the embedded reference model on a few rows."""

import math

import numpy as np
import pytest

from tests.filters.safety.rows import traces
from tracebank.errors import TracebankError
from tracebank.filters.memorization.perplexity import Perplexity, PerplexityOptions, encode, load_reference, robust_z

QUESTION = "Natalia sold 48 clips in April and half as many in May. How many clips did she sell in all?"
RATIONALE = "In May she sold 48 / 2 = 24 clips.\nIn all she sold 48 + 24 = 72 clips.\n#### 72"
NOISE = "zq vrk 48 plonk ### ultra bazooka fjord clip-clap 24 ?? miaow 72 trellis quantum"


def test_robust_z_is_median_and_scaled_mad():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan])
    z = robust_z(values)
    assert z[2] == 0  # the median
    assert z[3] == pytest.approx(1 / 1.4826)  # MAD is 1
    assert z[4] == pytest.approx(97 / 1.4826)
    assert np.isnan(z[5])


def test_robust_z_when_most_values_are_equal_or_all_are():
    z = robust_z(np.array([2.0, 2.0, 2.0, 2.0, 3.0]))  # MAD 0: mean absolute deviation (0.2) stands in
    assert z[:4].tolist() == [0, 0, 0, 0] and z[4] == pytest.approx(1 / (1.2533 * 0.2))
    assert robust_z(np.array([5.0, 5.0, np.nan])).tolist()[:2] == [0, 0]
    assert robust_z(np.array([np.nan])).tolist()[0] != robust_z(np.array([np.nan])).tolist()[0]  # NaN stays NaN


def test_result_flags_only_outliers_above_the_threshold():
    log_ppl = np.log(np.array([3.0, 3.2, 3.1, 2.9, 3.05, 40.0, np.nan]))
    out = Perplexity().result([f"t{i}" for i in range(7)], log_ppl).to_pylist()
    assert [o["flagged"] for o in out] == [0, 0, 0, 0, 0, 1, None]
    assert out[5]["reason"].startswith("perplexity outlier: perplexity 40.0 vs dataset median 3.1 (robust z ")
    assert out[5]["perplexity"] == pytest.approx(40.0) and out[5]["log_ppl_z"] > 3.5
    assert out[6]["reason"] == "no_text" and out[6]["perplexity"] is None and out[6]["log_ppl_z"] is None
    assert all(o["passed"] == (o["flagged"] == 0) for o in out[:6])
    lenient = Perplexity(PerplexityOptions(z_threshold=1000)).result(["a", "b", "c"], np.log([3.0, 3.1, 40.0]))
    assert not any(lenient.column("flagged").to_pylist())


@pytest.mark.parametrize(
    "options",
    [
        {"model": ""},
        {"model": 3},
        {"max_tokens": 1},
        {"max_tokens": 512.0},
        {"batch_size": 0},
        {"batch_size": True},
        {"z_threshold": 0},
        {"z_threshold": float("inf")},
        {"z_threshold": "high"},
    ],
)
def test_options_refuse_bad_values(options):
    with pytest.raises(TracebankError, match="perplexity"):
        PerplexityOptions(**options)


@pytest.fixture(scope="module")
def reference():
    return load_reference(PerplexityOptions().model)


def test_encode_scores_the_rationale_after_the_chat_prompt_and_cuts_to_max_tokens(reference):
    tokenizer = reference[0]
    ids, scored = encode(tokenizer, [{"role": "user", "content": QUESTION}], RATIONALE, 512)
    assert tokenizer.decode(ids[-scored:]) == RATIONALE
    assert "Natalia" in tokenizer.decode(ids[:-scored]) and "assistant" in tokenizer.decode(ids[:-scored])
    ids, scored = encode(tokenizer, [{"role": "user", "content": QUESTION}], RATIONALE * 20, 64)
    assert len(ids) == 64 and scored == 63  # the rationale's first tokens, one prompt token before them


def test_embedded_model_scores_a_few_rows(reference):
    rows = [(QUESTION, RATIONALE), (QUESTION, NOISE), ("What is 2 + 3?", "2 + 3 = 5.\n#### 5"), (QUESTION, None)]
    one_at_a_time = Perplexity(PerplexityOptions(batch_size=1)).score(traces(rows)).to_pylist()
    batched = Perplexity(PerplexityOptions(batch_size=3)).score(traces(rows)).to_pylist()
    ppl = [o["perplexity"] for o in batched]
    assert all(p is not None and 1 < p < math.inf for p in ppl[:3]) and ppl[3] is None
    assert ppl[1] > 10 * ppl[0]  # noise is far more surprising than a worked solution
    for single, together in zip(one_at_a_time[:3], batched[:3], strict=True):  # padding changes nothing
        assert single["perplexity"] == pytest.approx(together["perplexity"], rel=1e-3)
    assert batched[3]["flagged"] is None and batched[3]["reason"] == "no_text"
    assert Perplexity().score(traces([])).num_rows == 0
    blank = Perplexity().score(traces([(QUESTION, " \n"), (QUESTION, None)])).to_pylist()
    assert [o["reason"] for o in blank] == ["no_text", "no_text"]
