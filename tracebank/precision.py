"""Numeric precision chosen for the hardware: one rule for training, evaluation and local generation.

``auto`` picks, and says why:

- on a CUDA GPU: bf16 where the GPU supports it (Ampere and later), else fp16;
- on a CPU: bf16 only where the CPU runs it natively (AVX512-BF16 or AMX, and neither PyTorch's
  kernels nor oneDNN capped below them by ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA``), else
  fp32. A CPU without native bf16 emulates it: a SmolLM2-135M training step runs ~25x slower in
  bf16 autocast than in fp32 on an AVX2-only CPU.

An explicit ``bf16`` on a CPU that only emulates it is honoured with a warning; ``fp16`` needs a
GPU; ``bf16`` on a GPU without it is refused. Training uses the choice as mixed precision
(fp32 weights, autocast); generation and scoring load the weights in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tracebank.errors import TracebankError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# oneDNN's ISA names below native bf16 (its full list: oneDNN's docs, "CPU ISA hints")
ONEDNN_BELOW_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}
ATEN_BELOW_BF16 = {"DEFAULT", "AVX2"}


@dataclass(frozen=True)
class Precision:
    """What a stage runs in (``name``: fp32, bf16 or fp16), on which device, and why."""

    name: str
    device: str  # cuda | cpu
    requested: str  # what the config asked for: auto or a name
    reason: str
    warning: str | None = None  # said to the user when the choice is known to be slow

    def trainer_flags(self) -> dict[str, bool]:
        """TRL/transformers TrainingArguments flags for mixed precision (TRL's own default is bf16=True)."""
        return {"bf16": self.name == "bf16", "fp16": self.name == "fp16"}

    def torch_dtype(self):  # -> torch.dtype
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.reason})"

    def record(self) -> dict[str, str]:
        """The fields that go into training cards and run rows."""
        return {"precision": self.name, "device": self.device, "precision_requested": self.requested,
                "precision_reason": self.reason}  # fmt: skip


def check(requested: str, what: str = "precision") -> str:
    """Refuse a precision name that is not one of :data:`PRECISIONS` (``what`` names the setting)."""
    if requested not in PRECISIONS:
        raise TracebankError(f"{what} must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    return requested


def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU runs bf16 matmuls natively, and the evidence (what torch reports)."""
    import torch

    features = [
        name
        for name, probe in (("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
        if getattr(torch.cpu, probe, lambda: False)()
    ]
    if not features:
        return False, "this CPU has no native bf16 (no AVX512-BF16 or AMX): bf16 would be emulated"
    aten = torch.backends.cpu.get_cpu_capability()
    if aten in ATEN_BELOW_BF16:
        return False, f"the CPU has {'/'.join(features)} but PyTorch's kernels are capped at {aten}"
    onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if onednn in ONEDNN_BELOW_BF16:
        return False, f"the CPU has {'/'.join(features)} but ONEDNN_MAX_CPU_ISA caps oneDNN at {onednn}"
    return True, f"the CPU runs bf16 natively ({'/'.join(features)})"


def resolve(requested: str = "auto", device: str | None = None) -> Precision:
    """The precision a stage runs in on ``device`` (default: cuda when there is a GPU, else cpu)."""
    check(requested)
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        bf16_ok = torch.cuda.is_bf16_supported()
        gpu = torch.cuda.get_device_name()
        if requested == "auto":
            if bf16_ok:
                return Precision("bf16", "cuda", requested, f"{gpu} supports bf16")
            return Precision("fp16", "cuda", requested, f"{gpu} has no bf16; fp16 instead")
        if requested == "bf16" and not bf16_ok:
            raise TracebankError(f"precision bf16: {gpu} does not support bf16; use fp16, fp32 or auto")
        return Precision(requested, "cuda", requested, "asked for")
    native, evidence = cpu_bf16()
    if requested == "auto":
        return Precision("bf16" if native else "fp32", "cpu", requested, evidence)
    if requested == "fp16":
        raise TracebankError("precision fp16 needs a GPU; on a CPU use auto, fp32 or bf16")
    warning = None
    if requested == "bf16" and not native:
        warning = f"precision bf16 asked for, but {evidence}: expect it to run many times slower than fp32"
    return Precision(requested, "cpu", requested, "asked for" if native or requested != "bf16" else evidence, warning)
