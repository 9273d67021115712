"""SFT with TRL on the real SmolLM2 weights, for two steps on a tiny release."""

import orjson
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tracebank import catalog, releases
from tracebank.errors import TracebankError
from tracebank.filters.policy import Policy
from tracebank.models import DEFAULT_MODEL, resolve_model
from tracebank.train.base import CARD_JSON
from tracebank.train.sft import SFTConfig, load_split, train_sft

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
    with catalog.Catalog(location) as cat:
        assert card["release"]["snapshot_id"] == cat.scalar("SELECT snapshot_id FROM releases")
        assert cat.scalar("SELECT count(*) FROM runs WHERE stage = 'train'") == 1
    assert "DuckLake snapshot" in (out / "README.md").read_text()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("What is 2 + 2?", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids["input_ids"].shape[1]

    again = train_sft(
        location, SFTConfig(release=released, output_dir=str(out), max_steps=2, batch_size=2, learning_rate=1e-4)
    )
    assert again.skipped


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
