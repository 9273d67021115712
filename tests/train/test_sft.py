"""SFT with TRL on the real SmolLM2 weights, for two steps on a tiny release."""

import orjson
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tracebank import catalog, precision, records
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.errors import TracebankError
from tracebank.models import DEFAULT_MODEL, resolve_model
from tracebank.train.base import CARD_JSON
from tracebank.train.sft import SFTConfig, cut_spans, load_split, train_sft

POLICY = {
    "name": "correct",
    "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}],
    "splits": {"train": 1.0},
}


@pytest.fixture
def released(location, scored):
    releases.curate(location, scored, Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "sft test")
    return f"{scored}@v1"


def test_examples_are_trl_prompt_completion_conversations(location, released):
    data = load_split(location, releases.ReleaseRef.parse(released), "train")
    assert len(data.examples) == 12  # the correct traces only
    for example in data.examples:
        assert example["prompt"][-1]["role"] == "user" and "####" in example["prompt"][-1]["content"]
        assert example["completion"][0]["role"] == "assistant" and example["completion"][0]["content"]
    with pytest.raises(TracebankError, match="keeps no traces in split 'test'; splits with kept traces: train"):
        load_split(location, releases.ReleaseRef.parse(released), "test")


@pytest.mark.slow
def test_two_sft_steps_change_weights_and_the_model_reloads(location, released, tmp_path):
    out = tmp_path / "student"
    result = train_sft(
        location, SFTConfig(release=released, output_dir=str(out), max_steps=2, batch_size=2, learning_rate=1e-4)
    )
    assert not result.skipped and result.examples == 12 and result.metrics["steps"] == 2
    base = load_file(f"{resolve_model(DEFAULT_MODEL)}/model.safetensors")
    tuned = load_file(out / "model.safetensors")
    changed = [name for name in base if name in tuned and not torch.equal(base[name], tuned[name])]
    assert len(changed) > len(base) // 2, "training must update the weights"
    card = orjson.loads((out / CARD_JSON).read_bytes())
    chosen = precision.resolve("auto")
    assert card["hardware"] == chosen.record() and card["config"]["precision"] == "auto"
    assert card["config"]["gradient_checkpointing"] is False
    assert card["metrics"]["tokens_per_second"] > 0 and card["metrics"]["seconds_per_step"] > 0
    with catalog.Catalog(location) as cat:
        assert card["release"]["snapshot_id"] == cat.scalar("SELECT snapshot_id FROM releases")
        assert cat.scalar("SELECT count(*) FROM runs WHERE stage = 'train'") == 1
        run_config = orjson.loads(cat.scalar("SELECT config FROM runs WHERE stage = 'train'"))
    assert run_config["precision"] == chosen.name and run_config["precision_requested"] == "auto"
    readme = (out / "README.md").read_text()
    assert (
        "DuckLake snapshot" in readme and f"| precision | {chosen.name} on cpu (asked: auto; {chosen.reason})" in readme
    )

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("What is 2 + 2?", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids["input_ids"].shape[1]

    again = train_sft(
        location, SFTConfig(release=released, output_dir=str(out), max_steps=2, batch_size=2, learning_rate=1e-4)
    )
    assert again.skipped
    if chosen.name != "fp32":  # the same release in another precision is another student: trained, not skipped
        retrained = train_sft(location, SFTConfig(release=released, output_dir=str(out), max_steps=1, batch_size=2,
                                                  learning_rate=1e-4, precision="fp32"))  # fmt: skip
        assert not retrained.skipped
        assert orjson.loads((out / CARD_JSON).read_bytes())["hardware"]["precision"] == "fp32"


def test_add_evaluation_records_a_probe_in_the_card_and_readme(tmp_path):
    from tracebank.train.base import add_evaluation, publish, training_readme

    card = {"stage": "sft", "base_model": "m", "split": "train", "examples": 3, "config": {"seed": 0},
            "metrics": {"steps": 2.0, "first_loss": 1.0, "last_loss": 0.5, "train_loss": 0.7, "runtime_s": 1.0},
            "versions": {"trl": "1", "transformers": "5", "torch": "2"},
            "release": {"dataset": "d", "version": 1, "snapshot_id": 4, "policy_name": "p", "decisions_digest": "x"}}  # fmt: skip
    staged, out = tmp_path / "staged", tmp_path / "student"
    staged.mkdir()
    publish(staged, out, card, training_readme(card))
    add_evaluation(out, "poison probe", "Share of completions with a link.", {"url rate": 0.125, "note": "a | <b>"})
    add_evaluation(out, "poison probe", "Again, replaced.", {"url rate": 0.25})
    saved = orjson.loads((out / CARD_JSON).read_bytes())
    assert saved["evaluations"] == {"poison probe": {"description": "Again, replaced.", "results": {"url rate": 0.25}}}
    readme = (out / "README.md").read_text()
    assert "## Evaluations" in readme and "| url rate | 0.25 |" in readme and "0.125" not in readme
    add_evaluation(out, "hostile", "x", {"<script>": "a | b\nc"})
    readme = (out / "README.md").read_text()
    assert "<script>" not in readme and "| &lt;script&gt; | a \\| b c |" in readme
    with pytest.raises(TracebankError, match="no tracebank training card"):
        add_evaluation(tmp_path / "staged-missing", "x", "y", {})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"release": "x@12"}, "expected DATASET@vN"),
    ],
)
def test_sft_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        SFTConfig(**{"release": "d@v1", **kwargs})


def _add_chunks(location, dataset, rows):
    with catalog.writing(location, "chunks for a test") as writer:
        writer.insert("chunks", records.to_table(rows, records.CHUNKS))


def _chunk(trace_id, dataset, idx, start, end, kind, score=None, run_id="chunk-1", text="x"):
    return {"trace_id": trace_id, "dataset": dataset, "chunk_idx": idx, "text": text, "char_start": start,
            "char_end": end, "kind": kind, "score": score, "scorer": None, "run_id": run_id, "tokens": None,
            "checked_steps": None, "wrong_steps": None, "redundant_of": None, "boilerplate": None,
            "features": None}  # fmt: skip


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([(8, 15)], "Step 1. Step 3."),  # a middle step: one space is left between its neighbours
        ([(0, 7)], "Step 2. Step 3."),
        ([(16, 23)], "Step 1. Step 2."),
        ([(0, 7), (8, 15)], "Step 3."),
        ([], "Step 1. Step 2. Step 3."),
    ],
)
def test_cut_spans_removes_steps_and_keeps_one_gap(spans, expected):
    cut = [{"chunk_idx": i, "char_start": s, "char_end": e} for i, (s, e) in enumerate(spans)]
    assert cut_spans("Step 1. Step 2. Step 3.", cut, "t") == expected
    assert cut_spans("a\nb\nc\nd", [{"chunk_idx": 1, "char_start": 2, "char_end": 3}], "t") == "a\nc\nd"


def test_cut_spans_refuses_spans_outside_the_rationale():
    with pytest.raises(TracebankError, match="chunk 4 of trace t spans characters 3..40"):
        cut_spans("short", [{"chunk_idx": 4, "char_start": 3, "char_end": 40}], "t")


def test_chunk_wise_split_cuts_unwanted_steps_and_keeps_unchunked_traces(location, released):
    ref = releases.ReleaseRef.parse(released)
    whole = {e["trace_id"]: e["completion"][0]["content"] for e in load_split(location, ref, "train").examples}
    dataset = ref.dataset
    first, second, *rest = sorted(whole)
    a, b = whole[first], whole[second]
    half_a, half_b = len(a) // 2, len(b) // 2
    _add_chunks(location, dataset, [
        # an older run of the first trace, superseded by the later one below
        _chunk(first, dataset, 0, 0, len(a), "restate", run_id="chunk-0"),
        _chunk(first, dataset, 0, 0, half_a, "restate", 0.9, run_id="chunk-2"),
        _chunk(first, dataset, 1, half_a, len(a), "compute", 0.8, run_id="chunk-2"),
        _chunk(second, dataset, 0, 0, half_b, "reasoning", 0.2, run_id="chunk-2"),
        _chunk(second, dataset, 1, half_b, len(b), "compute", None, run_id="chunk-2"),
    ])  # fmt: skip
    cfg = SFTConfig(release=released, chunk_kinds="reasoning,compute", chunk_min_score=0.5)
    data = load_split(location, ref, "train", cfg)
    got = {e["trace_id"]: e["completion"][0]["content"] for e in data.examples}
    assert got[first] == a[half_a:].strip()  # the restate step is cut (kind)
    assert got[second] == b[half_b:].strip()  # the low-scored step is cut; the unscored one stays
    assert all(got[t] == whole[t] for t in rest)  # no chunks: trained on whole
    assert data.stats == {"chunked_traces": 2, "unchunked_traces": len(rest), "traces_cut_whole": 0,
                          "chunks_kept": 2, "chunks_cut": 2}  # fmt: skip

    only_restate = load_split(location, ref, "train", SFTConfig(release=released, chunk_kinds="restate"))
    assert first in {e["trace_id"] for e in only_restate.examples}
    assert second not in {e["trace_id"] for e in only_restate.examples}  # every chunk cut: left out
    with pytest.raises(TracebankError, match="no chunk of kind summary .*kinds present: compute, reasoning, restate"):
        load_split(location, ref, "train", SFTConfig(release=released, chunk_kinds="compute,summary"))


def test_chunk_wise_sft_needs_chunks(location, released):
    with pytest.raises(TracebankError, match="no chunks for the kept traces"):
        load_split(location, releases.ReleaseRef.parse(released), "train",
                   SFTConfig(release=released, chunk_min_score=0.5))  # fmt: skip


@pytest.mark.slow
def test_the_cpu_trainers_loss_is_trls_loss(tmp_path):
    """On CPU SFT skips TRL's tiled LM head (slow there) for the model's own loss: the same number."""
    import datasets
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tracebank.train.base import sft_trainer

    path = resolve_model(DEFAULT_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
         "completion": [{"role": "assistant", "content": f"{a} + {b} = {a + b}\n#### {a + b}"}]}
        for a, b in ((2, 3), (17, 25), (100, 1), (8, 9))
    ]  # fmt: skip
    data = datasets.Dataset.from_list(rows)
    args = {"output_dir": str(tmp_path), "use_cpu": True, "bf16": False, "report_to": [],
            "per_device_train_batch_size": 4, "max_length": 64}  # fmt: skip
    losses = {}
    for name, make in (("plain", sft_trainer), ("trl", None)):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        config = trl.SFTConfig(**args)
        if make is None:
            trainer = trl.SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
        else:
            trainer = make(model, tokenizer, data, config)
            assert type(trainer).__name__ == "PlainLossSFTTrainer"
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        assert (batch["labels"] == -100).any()  # prompt tokens carry no loss
        model.train()  # as the Trainer sets it: a training step counts its tokens
        with torch.no_grad():
            losses[name] = trainer.compute_loss(model, dict(batch)).item()
        if name == "plain":
            assert trainer._total_train_tokens == int(batch["attention_mask"].sum())
    assert losses["plain"] == pytest.approx(losses["trl"], rel=1e-4)
