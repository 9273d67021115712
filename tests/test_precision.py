"""Precision chosen for the hardware: auto's rule on CPUs and GPUs, explicit choices, and bad input."""

import os
import subprocess
import sys

import pytest
import torch

from tracebank import precision
from tracebank.errors import TracebankError


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool = False, aten: str = "AVX512") -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


def test_auto_on_a_cpu_without_native_bf16_is_fp32_and_says_why(monkeypatch):
    _cpu(monkeypatch, avx512_bf16=False, aten="AVX2")
    chosen = precision.resolve("auto", "cpu")
    assert (chosen.name, chosen.device, chosen.requested) == ("fp32", "cpu", "auto")
    assert "no native bf16" in chosen.reason and chosen.warning is None
    assert chosen.trainer_flags() == {"bf16": False, "fp16": False}  # overrides TRL's bf16=True default
    assert chosen.torch_dtype() is torch.float32


@pytest.mark.parametrize(("avx512_bf16", "amx", "evidence"), [(True, False, "AVX512-BF16"), (False, True, "AMX")])
def test_auto_on_a_cpu_with_native_bf16_is_bf16(monkeypatch, avx512_bf16, amx, evidence):
    _cpu(monkeypatch, avx512_bf16, amx)
    chosen = precision.resolve("auto", "cpu")
    assert chosen.name == "bf16" and evidence in chosen.reason
    assert chosen.trainer_flags() == {"bf16": True, "fp16": False}
    assert chosen.record() == {"precision": "bf16", "device": "cpu", "precision_requested": "auto",
                               "precision_reason": chosen.reason}  # fmt: skip


@pytest.mark.parametrize(
    ("aten", "env", "needle"),
    [("AVX2", {}, "PyTorch's kernels are capped at AVX2"),
     ("AVX512", {"ONEDNN_MAX_CPU_ISA": "avx2"}, "ONEDNN_MAX_CPU_ISA caps oneDNN at AVX2"),
     ("AVX512", {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, "caps oneDNN at AVX512_CORE")],
)  # fmt: skip
def test_auto_honours_caps_below_native_bf16(monkeypatch, aten, env, needle):
    _cpu(monkeypatch, avx512_bf16=True, aten=aten)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    chosen = precision.resolve("auto", "cpu")
    assert chosen.name == "fp32" and needle in chosen.reason


def test_a_cpu_capped_to_avx2_resolves_to_fp32_in_a_real_process():
    """No monkeypatching: torch itself reports the capped kernels in a fresh interpreter."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = "from tracebank import precision; p = precision.resolve('auto', 'cpu'); print(p.name, '|', p.reason)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("fp32 |"), out


def test_explicit_choices_on_a_cpu(monkeypatch):
    _cpu(monkeypatch, avx512_bf16=False, aten="AVX2")
    assert precision.resolve("fp32", "cpu").name == "fp32"
    slow = precision.resolve("bf16", "cpu")  # honoured, but the user is told it is emulated
    assert slow.name == "bf16" and "slower" in slow.warning
    with pytest.raises(TracebankError, match="fp16 needs a GPU"):
        precision.resolve("fp16", "cpu")
    _cpu(monkeypatch, avx512_bf16=True)
    assert precision.resolve("bf16", "cpu").warning is None


@pytest.mark.parametrize(("bf16_ok", "auto"), [(True, "bf16"), (False, "fp16")])
def test_gpus_take_bf16_where_supported_else_fp16(monkeypatch, bf16_ok, auto):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Test GPU")
    chosen = precision.resolve("auto", "cuda")
    assert (chosen.name, chosen.device) == (auto, "cuda") and "Test GPU" in chosen.reason
    assert precision.resolve("fp16", "cuda").trainer_flags() == {"bf16": False, "fp16": True}
    if not bf16_ok:
        with pytest.raises(TracebankError, match="Test GPU does not support bf16"):
            precision.resolve("bf16", "cuda")


@pytest.mark.parametrize("bad", ["int8", "FP32", "", "float32"])
def test_unknown_precisions_are_refused_naming_the_choices(bad):
    with pytest.raises(TracebankError, match="precision must be one of auto, fp32, bf16, fp16"):
        precision.resolve(bad)


def test_every_stage_config_validates_its_precision():
    from tracebank.builders.transformers_backend import TransformersOptions
    from tracebank.filters.memorization.perplexity import PerplexityOptions
    from tracebank.train.evaluate import EvalConfig
    from tracebank.train.preference import PreferenceConfig
    from tracebank.train.sft import SFTConfig

    for make, what in [
        (lambda: SFTConfig(release="d@v1", precision="half"), "precision"),
        (lambda: PreferenceConfig(release="d@v1", precision="half"), "precision"),
        (lambda: EvalConfig("m", release="d@v1", precision="half"), "precision"),
        (lambda: TransformersOptions(precision="half"), "transformers precision"),
        (lambda: PerplexityOptions(precision="half"), "perplexity precision"),
    ]:
        with pytest.raises(TracebankError, match=f"^{what} must be one of"):
            make()


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # TRL's default, not ours
def test_trl_takes_the_flags_over_its_bf16_default(tmp_path):
    import trl

    assert trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is True  # the default this module exists for
    flags = precision.Precision("fp32", "cpu", "auto", "test").trainer_flags()
    args = trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True, **flags)
    assert args.bf16 is False and args.fp16 is False
