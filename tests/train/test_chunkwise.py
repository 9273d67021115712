"""Chunk-wise SFT (Skip-Thinking): examples per chunk, the skip variant, continuation tokens, a real run."""

import orjson
import pytest
import yaml

from tests.fakes import QUESTIONS
from tracebank.builders.base import Response
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.train.base import CARD_JSON
from tracebank.train.chunkwise import end_of_turn, tokenize_continuation
from tracebank.train.sft import SFTConfig, load_split, train_sft

POLICY = {"name": "all", "rules": [], "splits": {"train": 1.0}}


class StepTeacher:
    """Right answers written as steps: a restatement, a transition, two computations, a summary, the answer."""

    backend = "fake"

    def generate(self, requests):
        for request in requests:
            question = next(q for q in QUESTIONS if q in request.messages[-1]["content"])
            answer = int(QUESTIONS[question])
            text = (
                f"The problem asks for one number.\nLet's solve this step by step.\n"
                f"First, {answer} - 1 = {answer - 1}.\nThen {answer - 1} + 1 = {answer}.\n"
                f"So the result is {answer}.\n#### {answer}"
            )
            yield Response(request.key, text, "stop", prompt_tokens=20, completion_tokens=30, latency_s=0.0)


@pytest.fixture
def chunked_release(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=1), StepTeacher())
    score(location, ScoreConfig(math_dataset, ("correctness", "chunking"), {"chunking": {"embeddings": False}}))
    releases.curate(location, math_dataset, Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "chunk-wise test")
    return f"{math_dataset}@v1"


KINDS = ["restate", "summary", "compute", "compute", "summary", "answer"]


def test_one_example_per_chunk_with_the_earlier_chunks_as_context(location, chunked_release):
    data = load_split(location, ReleaseRef.parse(chunked_release), "train", SFTConfig(chunked_release, chunk_wise=True))
    assert data.stats == {"chunked_traces": 6, "unchunked_traces": 0, "chunk_examples": 36, "chunks_skipped": 0}
    first = [e for e in data.examples if e["trace_id"] == data.examples[0]["trace_id"]]
    assert len(first) == len(KINDS) and [e["final"] for e in first] == [False] * 5 + [True]
    assert first[0]["prompt"][-1]["role"] == "user"  # the first chunk has no context
    rationale = first[-1]["prompt"][-1]["content"] + first[-1]["completion"][0]["content"]
    for example in first:
        context = example["prompt"][-1]["content"] if example["prompt"][-1]["role"] == "assistant" else ""
        assert rationale.startswith(context + example["completion"][0]["content"])  # context: all that came before
        assert example["completion"][0]["role"] == "assistant"
    target = first[2]["completion"][0]["content"]
    assert target.startswith("First, ") and target.endswith(".\n")  # a middle chunk keeps its line break
    assert rationale.startswith("The problem asks") and first[-1]["completion"][0]["content"].startswith("#### ")


def test_the_skip_variant_leaves_non_reasoning_chunks_out(location, chunked_release):
    cfg = SFTConfig(chunked_release, chunk_wise=True, chunk_skip=True)
    data = load_split(location, ReleaseRef.parse(chunked_release), "train", cfg)
    assert data.stats == {"chunked_traces": 6, "unchunked_traces": 0, "chunk_examples": 18, "chunks_skipped": 18,
                          "skipped_restate": 6, "skipped_summary": 12}  # fmt: skip
    first = [e for e in data.examples if e["trace_id"] == data.examples[0]["trace_id"]]
    assert [e["completion"][0]["content"].split(" ")[0] for e in first] == ["First,", "Then", "####"]
    assert first[-1]["prompt"][-1]["content"].startswith("First, ")  # context: only the kept chunks
    assert "step by step" not in first[-1]["prompt"][-1]["content"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_skip": True}, "chunk_skip is the skip variant of chunk-wise SFT; give chunk_wise too"),
        ({"chunk_wise": True, "chunk_kinds": "compute"}, "chunk_wise trains one chunk per example"),
        ({"chunk_wise": True, "chunk_min_score": 0.5}, "chunk_wise trains one chunk per example"),
    ],
)
def test_chunk_wise_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        SFTConfig("d@v1", **kwargs)


def test_chunk_wise_needs_chunks(location, scored):
    releases.curate(location, scored, Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "no chunks")
    with pytest.raises(TracebankError, match="run `tracebank score DATASET --filter chunking` first"):
        load_split(location, ReleaseRef.parse(f"{scored}@v1"), "train", SFTConfig(f"{scored}@v1", chunk_wise=True))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tracebank.models import DEFAULT_MODEL, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))


@pytest.mark.parametrize("final", [False, True])
def test_context_and_target_are_one_assistant_turn(tokenizer, final):
    example = {
        "prompt": [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "First, 2 + 3 = 5.\n"},
        ],
        "completion": [{"role": "assistant", "content": "#### 5" if final else "So it is 5.\n"}],
        "final": final,
    }
    turn_end = end_of_turn(tokenizer)
    assert turn_end.startswith("<|im_end|>")
    tokens = tokenize_continuation(example, tokenizer, turn_end)
    target = tokenizer.decode([t for t, m in zip(tokens["input_ids"], tokens["completion_mask"], strict=True) if m])
    context = tokenizer.decode(tokens["input_ids"])
    assert target == ("#### 5" + turn_end if final else "So it is 5.\n")
    assert context.count("<|im_start|>assistant") == 1  # not a second turn
    assert "First, 2 + 3 = 5.\n" + target in context


@pytest.mark.slow
def test_chunk_wise_sft_trains_and_its_card_counts_examples(location, chunked_release, tmp_path):
    out = tmp_path / "student"
    cfg = SFTConfig(chunked_release, output_dir=str(out), max_steps=2, batch_size=2, chunk_wise=True, chunk_skip=True)
    result = train_sft(location, cfg)
    assert not result.skipped and result.examples == 18 and result.metrics["steps"] == 2
    card = orjson.loads((out / CARD_JSON).read_bytes())
    assert card["data"]["chunk_examples"] == 18 and card["data"]["skipped_summary"] == 12
    assert card["config"]["chunk_wise"] and card["config"]["chunk_skip"]
    assert "| chunks_skipped | 18 |" in (out / "README.md").read_text()
