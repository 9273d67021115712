"""Memorization risk: copies of other prompts and references, loops, one's own question, options, the model
on two short traces, and scoring, curating and carding real GSM8K rows end to end."""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest

from tests import ROOT
from tests.conftest import write_jsonl
from tracebank import catalog, records
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.errors import TracebankError
from tracebank.filters.memorization.memorization import Memorization, MemorizationOptions
from tracebank.filters.memorization.perplexity import Perplexity
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data

GSM8K = Path("/work/shared/data/gsm8k/train.jsonl")
POLICY = ROOT / "recipes" / "policies" / "memorization.yaml"
SOURCE = "/data/gsm8k/train.jsonl"
OWN_WORDS = {  # correct solutions of train rows 0, 1 and 4, written for these tests
    0: "Half of 48 is 24, so she sold 24 in May.\nBoth months together give 48 + 24 = 72 clips.\n#### 72",
    1: "Per minute she makes 12 / 60 = 0.2 dollars.\nFifty minutes pay 0.2 * 50 = 10 dollars.\n#### 10",
    4: "Each week means 3 * 2 = 6 pages per friend round, twice: 12 pages.\nOver 52 weeks: 12 * 52 = 624.\n#### 624",
}
LOOP = "We need to check the total again, so we add them up once more.\n" * 12 + "#### 5"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with GSM8K.open("rb") as lines:
        return [orjson.loads(next(lines)) for _ in range(8)]


def prompts_table(rows: list[dict]) -> pa.Table:
    """Train rows as the prompts a catalog holds: ids ``p0``, ``p1``, ... from ``SOURCE``, row number as id."""
    schema = pa.schema([("prompt_id", pa.string()), ("messages", records.MESSAGES), ("reference", pa.string()),
                        ("source", pa.string()), ("source_id", pa.string())])  # fmt: skip
    return pa.table(
        {
            "prompt_id": [f"p{i}" for i in range(len(rows))],
            "messages": [[{"role": "user", "content": r["question"]}] for r in rows],
            "reference": [r["answer"] for r in rows],
            "source": [SOURCE] * len(rows),
            "source_id": [str(i) for i in range(len(rows))],
        },
        schema=schema,
    )


def traces_table(rows: list[dict], answered: list[tuple[int, str | None]]) -> pa.Table:
    """Traces ``t0``, ``t1``, ... answering train row ``i`` (its question the prompt) with a rationale."""
    return pa.table(
        {
            "trace_id": [f"t{k}" for k in range(len(answered))],
            "prompt_id": [f"p{i}" for i, _ in answered],
            "messages": pa.array([[{"role": "user", "content": rows[i]["question"]}] for i, _ in answered], records.MESSAGES),
            "rationale": pa.array([text for _, text in answered], pa.string()),
        }
    )  # fmt: skip


def scored(rows: list[dict], answered: list[tuple[int, str | None]], **options) -> list[dict]:
    scorer = Memorization(MemorizationOptions(perplexity=False, **options))
    scorer.use(prompts_table(rows))
    return scorer.score(traces_table(rows, answered)).to_pylist()


def word_count(text: str) -> int:
    return len(re.findall(r"\d+(?:\.\d+)?|\w+", text.lower()))


def test_a_copied_reference_of_another_prompt_is_high_risk_and_named(rows):
    copy, ordinary = scored(rows, [(0, rows[3]["answer"]), (0, OWN_WORDS[0])])
    assert copy["overlap"] == 1.0 and copy["longest_overlap"] == word_count(rows[3]["answer"])
    assert copy["risk"] == 1.0 and copy["passed"] is False and copy["signal"] == "overlap"
    assert (copy["source_prompt_id"], copy["source"], copy["source_field"]) == (
        "p3",
        "gsm8k/train.jsonl#3",
        "reference",
    )
    assert copy["reason"] == (
        f"memorization: 100% of 8-grams verbatim in source gsm8k/train.jsonl#3:reference"
        f"; longest shared run {word_count(rows[3]['answer'])} words"
    )
    assert ordinary["overlap"] == 0 and ordinary["risk"] < 0.5 and ordinary["passed"] and ordinary["reason"] == "ok"
    assert ordinary["source"] is None and ordinary["longest_overlap"] == 0


def test_restating_its_own_question_does_not_count_but_another_prompts_question_does(rows):
    restated = rows[0]["question"] + "\n" + OWN_WORDS[0]
    own, other = scored(rows, [(0, restated), (2, restated)])
    assert own["overlap"] == 0 and own["own_overlap"] == 0 and own["longest_overlap"] == 0 and own["passed"]
    assert other["source_prompt_id"] == "p0" and other["source_field"] == "prompt" and not other["passed"]
    assert other["longest_overlap"] == word_count(rows[0]["question"])
    countable = word_count(restated) - 7  # every 8-gram of the rationale: none in row 2's question
    assert other["overlap"] == pytest.approx((word_count(rows[0]["question"]) - 7) / countable)


def test_its_own_reference_counts_on_its_own_ramp_and_fields_can_leave_references_out(rows):
    pasted, partial = scored(
        rows, [(3, rows[3]["answer"]), (3, rows[3]["answer"].split("\n")[0] + "\n" + OWN_WORDS[4])]
    )
    assert pasted["own_overlap"] == 1.0 and pasted["overlap"] == 0 and pasted["signal"] == "own_overlap"
    assert (
        pasted["reason"] == "memorization: 100% of 8-grams verbatim in its own reference gsm8k/train.jsonl#3:reference"
    )
    assert 0 < partial["own_overlap"] < 0.8 and partial["passed"]  # one line in common: an independent solution may
    questions_only = scored(rows, [(3, rows[3]["answer"]), (0, rows[3]["answer"])], fields=["prompt"])
    assert all(o["own_overlap"] == 0 and o["passed"] for o in questions_only)
    assert questions_only[0]["overlap"] == 0 and questions_only[1]["source_field"] == "prompt"  # it restates row 3's


def test_a_loop_compresses_well_and_is_high_risk(rows):
    loop, ordinary = scored(rows, [(2, LOOP), (1, OWN_WORDS[1])])
    assert loop["zlib_ratio"] == len(zlib.compress(LOOP.encode(), 9)) / len(LOOP.encode()) and loop["zlib_ratio"] < 0.2
    assert loop["risk"] == 1.0 and loop["signal"] == "zlib_ratio" and not loop["passed"]
    assert loop["reason"] == f"memorization: zlib ratio {loop['zlib_ratio']:.2f}, repetitive text"
    assert ordinary["zlib_ratio"] > 0.6 and ordinary["passed"]


def test_risk_is_the_largest_sub_risk_of_the_fixed_ramps(rows):
    half = "\n".join(rows[7]["answer"].split("\n")[:2])
    answered = [(i, OWN_WORDS[i] + "\n" + half) for i in (0, 1, 4)] + [(4, OWN_WORDS[4])]
    options = {"overlap_ramp": [0.05, 0.9], "run_ramp": [10, 60], "zlib_ramp": [0.9, 0.1]}
    out = scored(rows, answered, **options)

    def linear(value, start, full):  # 0 at start, 1 at full, clipped
        return min(1.0, max(0.0, (value - start) / (full - start)))

    for row in out:
        expected = max(
            linear(row["overlap"], 0.05, 0.9),
            linear(row["longest_overlap"], 10, 60),
            linear(row["zlib_ratio"], 0.9, 0.1),
        )
        assert row["risk"] == pytest.approx(expected) and row["passed"] == (row["risk"] < 0.5)
    risks = [row["risk"] for row in out]
    assert all(0 < r < 1 for r in risks[:3]) and risks[3] == 0  # partial copies land inside the ramps
    threshold = (min(risks[:3]) + max(risks[:3])) / 2
    assert min(risks[:3]) < threshold < max(risks[:3])
    strict = scored(rows, answered, **options, threshold=threshold)
    assert [row["passed"] for row in strict] == [r < threshold for r in risks]


def test_low_perplexity_is_a_dataset_relative_signal_and_no_text_is_not_judged(rows):
    scorer = Memorization(MemorizationOptions(perplexity=False))
    scorer.use(prompts_table(rows))
    table = traces_table(rows, [(i % 4, OWN_WORDS[i % 2]) for i in range(7)] + [(5, None)])
    copies = scorer.copies(pl.from_arrow(table))
    log_ppl = np.log([3.0, 3.2, 3.1, 2.9, 3.05, 3.0, 1.01, math.nan])
    judged = np.array([True] * 7 + [False])
    out = scorer.result([f"t{i}" for i in range(8)], copies, np.full(8, 0.7), log_ppl, judged).to_pylist()
    assert out[6]["signal"] == "log_ppl" and out[6]["risk"] == 1.0 and not out[6]["passed"]
    assert out[6]["reason"].startswith("memorization: perplexity 1.01 under smollm2-135m-instruct (robust z -")
    assert all(o["passed"] and o["risk"] == 0 for o in out[:6])
    assert out[7]["reason"] == "no_text" and out[7]["passed"] is None and out[7]["risk"] is None
    empty = scored(rows, [(0, None), (1, "  ")])
    assert [(o["reason"], o["risk"], o["zlib_ratio"]) for o in empty] == [("no_text", None, None)] * 2


def test_score_before_prepare_is_refused():
    with pytest.raises(TypeError, match="prepare"):
        Memorization().score(traces_table([{"question": "q"}], [(0, "a")]))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ngram": 2}, "ngram"),
        ({"ngram": 8.0}, "ngram"),
        ({"ngram": True}, "ngram"),
        ({"fields": ["prompt", "answer"]}, "fields"),
        ({"fields": []}, "fields"),
        ({"fields": ["prompt", "prompt"]}, "fields"),
        ({"datasets": ["a", "a"]}, "datasets"),
        ({"datasets": [""]}, "datasets"),
        ({"perplexity": "no"}, "perplexity"),
        ({"datasets": 3}, "datasets"),
        ({"student": ""}, "student settings: perplexity model"),
        ({"max_tokens": 1}, "max_tokens"),
        ({"batch_size": 0}, "batch_size"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"overlap_ramp": [0.5, 0.2]}, "overlap_ramp"),
        ({"overlap_ramp": [0.2]}, "overlap_ramp"),
        ({"run_ramp": [20, "x"]}, "run_ramp"),
        ({"own_ramp": [1.0, 1.0]}, "own_ramp"),
        ({"zlib_ramp": [0.2, 0.4]}, "zlib_ramp"),
        ({"ppl_z_ramp": [3, math.inf]}, "ppl_z_ramp"),
    ],
)
def test_every_option_rule_refuses_bad_input(values, message):
    with pytest.raises(TracebankError, match=message):
        MemorizationOptions(**values)
    with pytest.raises(TracebankError, match=message):  # as a run's filter options, before anything is read
        ScoreConfig("any", ("memorization",), {"memorization": values})


def test_options_from_yaml_lists_equal_the_defaults_they_spell():
    spelled = MemorizationOptions(fields=["prompt", "reference"], overlap_ramp=[0.15, 0.5], run_ramp=[16, 32])
    assert spelled == MemorizationOptions() and MemorizationOptions(fields="prompt").fields == ("prompt",)


def test_the_student_model_scores_two_short_traces_as_the_perplexity_filter_does(rows):
    answered = [(0, OWN_WORDS[0]), (1, OWN_WORDS[1])]
    scorer = Memorization(MemorizationOptions(batch_size=2))
    scorer.use(prompts_table(rows))
    out = scorer.score(traces_table(rows, answered)).to_pylist()
    expected = Perplexity().log_perplexities(traces_table(rows, answered).to_pylist())
    assert [o["log_ppl"] for o in out] == pytest.approx(expected.tolist(), rel=1e-4)
    assert all(0 < o["log_ppl"] < 5 and o["log_ppl_z"] is not None for o in out)


@pytest.fixture
def gsm8k_release(location, tmp_path, rows):
    """Train rows 0-6 imported with one trace each (own words, copies, a loop), scored, curated, carded."""
    solutions = {0: OWN_WORDS[0], 1: OWN_WORDS[1], 2: rows[3]["answer"], 3: LOOP, 4: OWN_WORDS[4],
                 5: rows[5]["answer"], 6: rows[6]["question"] + "\n" + rows[6]["answer"].split("\n")[-1]}  # fmt: skip
    data = [{**rows[i], "solution": solution, "id": str(i)} for i, solution in solutions.items()]
    path = write_jsonl((tmp_path / "gsm8k").mkdir() or tmp_path / "gsm8k" / "train.jsonl", data)
    column_map = ColumnMap.parse("prompt=question,reference=answer,response=solution,id=id")
    import_data(location, ImportConfig(str(path), "mem", column_map))
    score(
        location,
        ScoreConfig("mem", ("correctness", "exact_dup", "memorization"), {"memorization": {"perplexity": False}}),
    )
    policy, text = Policy.load(POLICY)
    releases.curate(location, "mem", policy, text, "memorization")
    from tracebank.curate.releases import ReleaseRef
    from tracebank.data_cards.render import render_card

    card = render_card(location, ReleaseRef.parse("mem@v1")).read_text()
    keep_all = Policy.from_dict({"name": "keep-all", "rules": [], "splits": {"train": 1.0}})
    releases.curate(location, "mem", keep_all, "keep-all", "everything")
    kept_card = render_card(location, ReleaseRef.parse("mem@v2")).read_text()
    with catalog.Catalog(location) as cat:
        stored = cat.sql("""
            SELECT t.source_id, s.metric, s.value, s.detail, s.passed, s.reason, d.keep, d.rule, d.reason AS why
            FROM scores s JOIN traces t USING (trace_id) JOIN decisions d USING (trace_id)
            WHERE s.filter = 'memorization' AND d.version = 1""")
    return stored, card, kept_card


def test_gsm8k_rows_end_to_end_policy_drops_copies_and_the_card_shows_the_stored_distribution(gsm8k_release):
    stored, card, kept_card = gsm8k_release
    risk = {r["source_id"]: r for r in stored.filter(stored["metric"] == "risk").to_dicts()}
    assert {i for i, r in risk.items() if not r["passed"]} == {"2", "3", "5"}  # another's reference, a loop, its own
    for i in ("2", "3", "5"):
        assert not risk[i]["keep"] and risk[i]["rule"] == "memorized" and risk[i]["why"] == risk[i]["reason"]
    assert risk["2"]["why"].startswith("memorization: 100% of 8-grams verbatim in source gsm8k/train.jsonl#3:reference")
    assert risk["6"]["passed"] and risk["0"]["keep"] and risk["1"]["keep"]  # restated question; own words
    section = card.split("## Memorization risk", 1)[1].split("\n## ", 1)[0]
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in section.splitlines()
             if line.startswith("| ") and not line.startswith("| metric")}  # fmt: skip
    header = next(line for line in section.splitlines() if line.startswith("| metric"))
    scopes = [c.strip() for c in header.split("|")[2:-1]]
    assert scopes[:2] == ["input", "all"]
    for metric, quantiles in (("risk", (50, 90, 99)), ("overlap", (50, 90, 99)), ("zlib_ratio", (1, 10, 50))):
        values = stored.filter(stored["metric"] == metric)
        for scope in ("input", "all"):
            chosen = values if scope == "input" else values.filter(values["keep"])
            for q in quantiles:
                expected = np.percentile(chosen["value"].to_numpy(), q)
                assert table[f"{metric}_p{q}"][scopes.index(scope)] == f"{expected:.3f}"
    assert table["over_threshold"][:2] == ["3", "0"] and table["scored"][:2] == ["7", str(int(stored.filter(
        stored["metric"] == "risk")["keep"].sum()))]  # fmt: skip
    assert "kept traces are over the threshold" not in section
    assert "**3 kept traces are over the threshold.**" in kept_card  # a release that keeps them says so


def test_other_datasets_prompts_count_only_when_named_and_an_unknown_one_is_refused(location, tmp_path, rows):
    train = write_jsonl((tmp_path / "gsm8k").mkdir() or tmp_path / "gsm8k" / "train.jsonl", rows[2:5])
    import_data(location, ImportConfig(str(train), "train", ColumnMap.parse("prompt=question,reference=answer")))
    data = [{**rows[i], "solution": text} for i, text in ((0, rows[3]["answer"]), (1, OWN_WORDS[1]))]
    mine = write_jsonl(tmp_path / "mine.jsonl", data)
    import_data(
        location, ImportConfig(str(mine), "mine", ColumnMap.parse("prompt=question,reference=answer,response=solution"))
    )

    def risks(options: dict) -> list[tuple[bool, str]]:
        score(location, ScoreConfig("mine", ("memorization",), {"memorization": {"perplexity": False, **options}}))
        with catalog.Catalog(location) as cat:
            return cat.sql("""SELECT s.passed, s.reason FROM scores s JOIN traces t USING (trace_id)
                              WHERE s.filter = 'memorization' AND s.metric = 'risk' ORDER BY t.source_id""").rows()

    assert risks({}) == [(True, "ok"), (True, "ok")]  # row 3 is no prompt of 'mine'
    copied, own_words = risks({"datasets": ["train"]})
    assert not copied[0] and copied[1].startswith(
        "memorization: 100% of 8-grams verbatim in source gsm8k/train.jsonl#2:reference"  # its 2nd line
    )
    assert own_words == (True, "ok")
    with catalog.Catalog(location) as cat:
        before = cat.snapshot_id()
    with pytest.raises(TracebankError, match="unknown dataset 'nope'"):
        risks({"datasets": ["nope"]})
    with catalog.Catalog(location) as cat:
        assert cat.snapshot_id() == before  # nothing written
