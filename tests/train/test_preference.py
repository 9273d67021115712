"""ORPO and DPO with TRL on the real SmolLM2 weights, for two steps on stored pairs."""

import pytest
import torch
from safetensors.torch import load_file

from tracebank.curate.releases import ReleaseRef
from tracebank.errors import TracebankError
from tracebank.models import DEFAULT_MODEL, resolve_model
from tracebank.train.base import CARD_JSON
from tracebank.train.pairs import PairsConfig, build_pairs
from tracebank.train.preference import PreferenceConfig, load_pairs, train_preference


def _changed_weights(out) -> int:
    base = load_file(f"{resolve_model(DEFAULT_MODEL)}/model.safetensors")
    tuned = load_file(out / "model.safetensors")
    return sum(1 for name in base if name in tuned and not torch.equal(base[name], tuned[name]))


def test_pairs_load_as_trl_preference_conversations(location, mixed_release):
    with pytest.raises(TracebankError, match="run `tracebank pairs"):
        load_pairs(location, ReleaseRef.parse(mixed_release), "train")
    build_pairs(location, PairsConfig(mixed_release))
    data = load_pairs(location, ReleaseRef.parse(mixed_release), "train")
    assert len(data.examples) == 12
    for example in data.examples:
        assert example["prompt"][-1]["role"] == "user"
        assert example["chosen"][0]["role"] == example["rejected"][0]["role"] == "assistant"
        assert example["chosen"][0]["content"] != example["rejected"][0]["content"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["orpo", "dpo"])
def test_two_preference_steps_change_weights_and_reload(location, mixed_release, tmp_path, method):
    build_pairs(location, PairsConfig(mixed_release))
    out = tmp_path / method
    cfg = PreferenceConfig(
        release=mixed_release, method=method, output_dir=str(out), max_steps=2, batch_size=2, learning_rate=1e-4
    )
    result = train_preference(location, cfg)
    assert not result.skipped and result.metrics["steps"] == 2 and result.examples == 12
    assert _changed_weights(out) > 10
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out) is not None
    assert (out / CARD_JSON).is_file() and f"{method.upper()} student" in (out / "README.md").read_text()


@pytest.mark.slow
def test_lora_sft_is_merged_into_a_plain_model(location, mixed_release, tmp_path):
    from tracebank.train.sft import SFTConfig, train_sft

    out = tmp_path / "lora"
    train_sft(
        location,
        SFTConfig(release=mixed_release, output_dir=str(out), max_steps=2, batch_size=2, learning_rate=1e-3, lora_r=4),
    )
    assert not (out / "adapter_config.json").exists()  # merged: loads without peft
    assert _changed_weights(out) > 10


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"method": "ppo"}, "method"), ({"beta": 0}, "beta"), ({"lora_r": -1}, "lora_r")]
)
def test_preference_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        PreferenceConfig(release="d@v1", **kwargs)
