"""``tracebank train sft``: supervised fine-tuning of a student on a release's kept traces.

    tracebank train sft --release gsm8k-demo@v1 --student smollm2-135m-instruct --max-steps 8

Trains with TRL's SFTTrainer on the release's ``train`` split (prompt-completion conversations,
loss on the completion), saves the model, tokenizer and a training card that names the release
snapshot, and skips the run when the same release and config were already trained.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from tracebank.train.base import completed, load_split, publish, staging_dir, training_readme

from tracebank import catalog as catalog_mod
from tracebank import provenance, records
from tracebank.errors import TracebankError
from tracebank.hashing import digest
from tracebank.models import DEFAULT_MODEL, resolve_model
from tracebank.releases import ReleaseRef


@dataclass(frozen=True)
class SFTConfig:
    release: str  # DATASET@vN
    student: str = DEFAULT_MODEL  # embedded model name, local path or cached hub id
    output_dir: str | None = None  # default: <catalog>/models/<dataset>-v<N>-sft
    split: str = "train"
    max_steps: int = 20
    learning_rate: float = 2e-5
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    seed: int = 0
    force: bool = False  # train again even if this release and config were trained

    def __post_init__(self) -> None:
        ReleaseRef.parse(self.release)
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(self, name) < 1:
                raise TracebankError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise TracebankError(f"learning_rate must be in (0, 1), got {self.learning_rate}")


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    release: str
    examples: int
    skipped: bool  # True: already trained with this release and config
    metrics: dict[str, float]


def train_sft(location: catalog_mod.CatalogLocation, cfg: SFTConfig) -> TrainResult:
    started_at = records.now()
    data = load_split(location, ReleaseRef.parse(cfg.release), cfg.split)
    release = data.release
    name = f"{release['dataset']}@v{release['version']}"
    output_dir = Path(
        cfg.output_dir or location.home / "models" / f"{release['dataset']}-v{release['version']}-sft"
    ).absolute()
    training_config = {k: v for k, v in asdict(cfg).items() if k not in ("force", "output_dir", "release")}
    fingerprint = digest("sft", name, release["snapshot_id"], release["decisions_digest"], training_config)
    if not cfg.force and completed(output_dir, fingerprint):
        return TrainResult(output_dir, name, len(data.examples), True, {})
    tmp = staging_dir(output_dir)
    metrics, versions = _fit(cfg, data.examples, tmp)
    card = {
        "stage": "sft", "fingerprint": fingerprint, "base_model": cfg.student, "split": cfg.split,
        "examples": len(data.examples), "config": training_config, "metrics": metrics, "versions": versions,
        "release": {k: release[k] for k in ("dataset", "version", "snapshot_id", "policy_name", "decisions_digest")},
        "git_sha": provenance.git_sha(),
    }  # fmt: skip
    publish(tmp, output_dir, card, training_readme(card))
    run_id = provenance.new_run_id("train")
    config = {**asdict(cfg), "output_dir": str(output_dir)}
    with catalog_mod.writing(location, f"train sft on {name}", {"stage": "train", "run_id": run_id}) as writer:
        writer.insert("runs", provenance.run_row(run_id, "train", release["dataset"], started_at, config, metrics))
    return TrainResult(output_dir, name, len(data.examples), False, metrics)


def _fit(cfg: SFTConfig, examples: list[dict], output_dir: Path) -> tuple[dict[str, float], dict[str, str]]:
    import datasets
    import torch
    import transformers
    import trl
    from transformers.utils import logging as hf_logging

    from tracebank import ui

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    path = resolve_model(cfg.student)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)  # TRL's own default
    args = trl.SFTConfig(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_length,
        seed=cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not ui.console.is_terminal,
    )
    train_set = datasets.Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer)
    started = time.perf_counter()
    result = trainer.train()
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    metrics = {
        "steps": float(result.global_step),
        "train_loss": float(result.training_loss),
        "first_loss": float(losses[0]),
        "last_loss": float(losses[-1]),
        "runtime_s": time.perf_counter() - started,
    }
    versions = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__}
    return metrics, versions
