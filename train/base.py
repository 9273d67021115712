"""What every training stage shares: the config, the fit loop over a TRL trainer, the training card.

A stage (SFT, ORPO, DPO) supplies its examples in one of TRL's conversational formats, so TRL
trains on them without adapter code, and a factory that builds its TRL trainer. Everything else
is here: loading the student, optional LoRA (merged back, so the output is a plain model),
training into a staging directory that replaces the output only when training finished, a
training card naming the release snapshot, a ``runs`` row in the catalog, and skipping a run
whose release and config were already trained.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tracebank import catalog as catalog_mod
from tracebank import precision as precision_mod
from tracebank import provenance, records
from tracebank.curate.releases import ReleaseRef
from tracebank.errors import TracebankError, check_at_least
from tracebank.hashing import digest
from tracebank.models import DEFAULT_MODEL, resolve_model

CARD_JSON = "tracebank_train.json"


@dataclass(frozen=True)
class TrainConfig:
    """Fields every training stage has; a stage's config adds its own."""

    release: str  # DATASET@vN
    student: str = DEFAULT_MODEL  # embedded model name, local path or cached hub id
    output_dir: str | None = None  # default: <catalog>/models/<dataset>-v<N>-<stage>
    split: str = "train"
    max_steps: int = 20
    learning_rate: float = 2e-5
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    seed: int = 0
    lora_r: int = 0  # > 0: train a LoRA adapter of this rank (merged into the saved model)
    lora_alpha: int = 16
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (tracebank.precision: auto picks what the hardware runs fast)
    gradient_checkpointing: bool = False  # recompute activations to save memory (slower; TRL defaults it on)
    force: bool = False  # train again even if this release and config were trained

    def __post_init__(self) -> None:
        ReleaseRef.parse(self.release)
        precision_mod.check(self.precision)
        check_at_least(self, 1, "max_steps", "batch_size", "gradient_accumulation_steps", "max_length", "lora_alpha")
        if self.lora_r < 0:
            raise TracebankError(f"lora_r must be 0 (full fine-tuning) or more, got {self.lora_r}")
        if not 0 < self.learning_rate < 1:
            raise TracebankError(f"learning_rate must be in (0, 1), got {self.learning_rate}")


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    release: str
    examples: int
    skipped: bool  # True: already trained with this release and config
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrainingData:
    release: dict[str, Any]  # the releases row trained on
    examples: list[dict[str, Any]]  # rows in a TRL conversational format
    stats: dict[str, float] = field(default_factory=dict)  # how the examples were made, e.g. chunks cut


# (model, tokenizer, train dataset, common TrainingArguments kwargs) -> a TRL trainer
TrainerFactory = Callable[[Any, Any, Any, dict[str, Any]], Any]


def completed(output_dir: Path, fingerprint: str) -> bool:
    """True when ``output_dir`` holds a finished run with the same fingerprint."""
    card = output_dir / CARD_JSON
    return card.exists() and orjson.loads(card.read_bytes()).get("fingerprint") == fingerprint


def staging_dir(output_dir: Path) -> Path:
    """A sibling directory to train into; it replaces ``output_dir`` only when training finished."""
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TracebankError(f"cannot create {output_dir.parent}: {error.strerror or error}") from None
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def publish(tmp: Path, output_dir: Path, card: dict[str, Any], readme: str) -> None:
    """Write the training card into ``tmp`` and swap it in place of ``output_dir``."""
    (tmp / CARD_JSON).write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2, default=str))
    (tmp / "README.md").write_text(readme)
    old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
    if output_dir.exists():
        output_dir.rename(old)
    tmp.rename(output_dir)
    shutil.rmtree(old, ignore_errors=True)


def run_training(
    location: catalog_mod.CatalogLocation,
    cfg: TrainConfig,
    stage: str,
    data: TrainingData,
    make_trainer: TrainerFactory,
) -> TrainResult:
    """Train (or skip when already trained), save, write the card and record the run."""
    started_at, release = records.now(), data.release
    name = f"{release['dataset']}@v{release['version']}"
    default_dir = location.home / "models" / f"{release['dataset']}-v{release['version']}-{stage}"
    output_dir = Path(cfg.output_dir or default_dir).absolute()
    training_config = {k: v for k, v in asdict(cfg).items() if k not in ("force", "output_dir", "release")}
    precision = precision_mod.resolve(cfg.precision)
    # The examples' own text too: chunk-wise SFT reads the chunks table, which changes after a release.
    # The precision used, not the one asked for: `auto` trains in fp32 on one machine and bf16 on another.
    fingerprint = digest(
        stage,
        name,
        release["snapshot_id"],
        release["decisions_digest"],
        {**training_config, "precision": precision.name},
        digest(data.examples),
    )
    if not cfg.force and completed(output_dir, fingerprint):
        return TrainResult(output_dir, name, len(data.examples), True, {})
    tmp = staging_dir(output_dir)
    try:
        metrics, versions, history = _fit(cfg, precision, data.examples, tmp, make_trainer)
        metrics = {**metrics, **data.stats}
        card = {
            "stage": stage, "fingerprint": fingerprint, "base_model": cfg.student, "split": cfg.split,
            "examples": len(data.examples), "data": data.stats, "config": training_config, "metrics": metrics,
            "hardware": precision.record(), "versions": versions,
            "loss_history": history,
            "release": {k: release[k] for k in ("dataset", "version", "snapshot_id", "policy_name", "decisions_digest")},
            "git_sha": provenance.git_sha(),
        }  # fmt: skip
        publish(tmp, output_dir, card, training_readme(card))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed run leaves the previous output as it was
        raise
    run_id = provenance.new_run_id("train")
    config = {**asdict(cfg), **precision.record(), "stage": stage, "output_dir": str(output_dir)}
    with catalog_mod.writing(location, f"train {stage} on {name}", {"stage": "train", "run_id": run_id}) as writer:
        writer.insert("runs", provenance.run_row(run_id, "train", release["dataset"], started_at, config, metrics))
    return TrainResult(output_dir, name, len(data.examples), False, metrics)


def _fit(
    cfg: TrainConfig,
    precision: precision_mod.Precision,
    examples: list[dict[str, Any]],
    output_dir: Path,
    make_trainer: TrainerFactory,
) -> tuple[dict[str, float], dict[str, str], list[dict[str, float]]]:
    import datasets
    import torch
    import transformers
    import trl
    from transformers.utils import logging as hf_logging

    from tracebank import ui

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    ui.console.print(f"training in {precision.describe()}")
    if precision.warning:
        ui.console.print(f"[yellow]warning:[/] {precision.warning}")
    path = resolve_model(cfg.student)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # fp32 master weights whatever the checkpoint holds: mixed precision autocasts from them (a bf16
    # checkpoint trained as bf16 parameters would lose small updates, and runs emulated on most CPUs).
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if cfg.lora_r:
        import peft

        lora = peft.LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        model = peft.get_peft_model(model, lora)
    common = {
        "output_dir": str(output_dir),
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "learning_rate": cfg.learning_rate,
        "max_length": cfg.max_length,
        "seed": cfg.seed,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": precision.device == "cpu",
        **precision.trainer_flags(),
        # transformers' new name for it; TRL turns the old one (gradient_checkpointing) on by default
        "activation_checkpointing": cfg.gradient_checkpointing,
        "disable_tqdm": not ui.console.is_terminal,
    }
    columns = [k for k in examples[0] if k != "trace_id" and not k.endswith("_id")]
    train_set = datasets.Dataset.from_list([{k: e[k] for k in columns} for e in examples])
    trainer = make_trainer(model, tokenizer, train_set, common)
    started = time.perf_counter()
    result = trainer.train()
    runtime = time.perf_counter() - started
    trained = trainer.model.merge_and_unload() if cfg.lora_r else trainer.model
    trained.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    history = [{"step": log["step"], "loss": log["loss"]} for log in trainer.state.log_history if "loss" in log]
    losses = [entry["loss"] for entry in history]
    metrics = {
        "steps": float(result.global_step),
        "train_loss": float(result.training_loss),
        "first_loss": float(losses[0]),
        "last_loss": float(losses[-1]),
        "runtime_s": runtime,
        "seconds_per_step": runtime / max(result.global_step, 1),
    }
    tokens = [log["num_tokens"] for log in trainer.state.log_history if "num_tokens" in log]
    if tokens:  # SFT logs the tokens it trained on; the preference trainers do not
        metrics["train_tokens"] = float(tokens[-1])
        metrics["tokens_per_second"] = tokens[-1] / runtime
    versions = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__}
    return metrics, versions, history


def add_evaluation(output_dir: Path, name: str, description: str, results: dict[str, Any]) -> None:
    """Record what a probe or benchmark measured on a trained student in its card and README.

    ``results`` maps a measure to a value (a number, or a short string such as "0.12 [0.07, 0.19]").
    The card and README are rewritten whole (temp file, then rename); an evaluation of the same name
    replaces the earlier one.
    """
    card_path = Path(output_dir) / CARD_JSON
    if not card_path.is_file():
        raise TracebankError(f"{output_dir} holds no tracebank training card ({CARD_JSON}): train it with tracebank")
    card = orjson.loads(card_path.read_bytes())
    card.setdefault("evaluations", {})[name] = {"description": description, "results": results}
    for path, text in ((card_path, orjson.dumps(card, option=orjson.OPT_INDENT_2, default=str)),
                       (card_path.with_name("README.md"), training_readme(card).encode())):  # fmt: skip
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(text)
        tmp.replace(path)


def _evaluations_section(card: dict[str, Any]) -> str:
    sections = []
    for name, entry in card.get("evaluations", {}).items():
        rows = "\n".join(f"| {_cell(k)} | {_cell(v)} |" for k, v in entry["results"].items())
        sections.append(
            f"\n### {_cell(name)}\n\n{_cell(entry['description'])}\n\n| measure | value |\n|---|---|\n{rows}\n"
        )
    return "\n## Evaluations\n" + "".join(sections) if sections else ""


def _cell(value: Any) -> str:
    """A value for one markdown table cell or line: no pipes, line breaks or HTML."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def training_readme(card: dict[str, Any]) -> str:
    """A model card: where the data came from, how it was trained, and what came out."""
    release, metrics, hardware = card["release"], card["metrics"], card.get("hardware", {})
    tokens = f", {metrics['tokens_per_second']:.0f} tokens/s" if "tokens_per_second" in metrics else ""
    config_rows = "\n".join(f"| {k} | {v} |" for k, v in card["config"].items())
    data_rows = "\n".join(
        f"| {k} | {int(v) if float(v).is_integer() else v} |" for k, v in card.get("data", {}).items()
    )
    data_section = (
        f"\n## How the examples were made\n\n| counter | value |\n|---|---|\n{data_rows}\n" if data_rows else ""
    )
    return f"""---
base_model: {card["base_model"]}
library_name: transformers
tags: [tracebank, trl, {card["stage"]}]
---

# {card["stage"].upper()} student trained on {release["dataset"]}@v{release["version"]}

| | |
|---|---|
| release | `{release["dataset"]}@v{release["version"]}` (DuckLake snapshot {release["snapshot_id"]}, policy `{release["policy_name"]}`) |
| split | {card["split"]} ({card["examples"]} examples) |
| base model | {card["base_model"]} |
| steps | {int(metrics["steps"])} |
| first / last loss | {metrics["first_loss"]:.4f} / {metrics["last_loss"]:.4f} |
| train loss (mean) | {metrics["train_loss"]:.4f} |
| runtime | {metrics["runtime_s"]:.1f} s ({metrics.get("seconds_per_step", 0):.2f} s a step{tokens}) |
| precision | {hardware.get("precision", "?")} on {hardware.get("device", "?")} (asked: {hardware.get("precision_requested", "?")}; {hardware.get("precision_reason", "")}) |
| trl / transformers / torch | {card["versions"]["trl"]} / {card["versions"]["transformers"]} / {card["versions"]["torch"]} |

## Config

| field | value |
|---|---|
{config_rows}
{data_section}{_evaluations_section(card)}"""


def sft_trainer(model: Any, tokenizer: Any, train_set: Any, args: Any) -> Any:
    """TRL's SFTTrainer; on CPU with the model's own cross-entropy in place of TRL's tiled LM head.

    TRL's head projects only the completion's positions, in tiles, and computes each token's entropy
    and top-1 hit for its logs: memory a GPU wants to save, and on CPU about a third more time per
    step than the plain loss (bench/train_throughput.py; SmolLM2-135M, batch 4 x 400, bf16: 9.8-10.6
    vs 7.5 s). The loss is the same token-mean cross-entropy; the logs lose ``entropy`` and
    ``mean_token_accuracy``.
    """
    import trl

    trainer_class = _plain_loss_sft_trainer() if args.use_cpu else trl.SFTTrainer
    return trainer_class(model=model, args=args, train_dataset=train_set, processing_class=tokenizer)


@functools.cache
def _plain_loss_sft_trainer() -> type:
    """The SFTTrainer subclass (made once, when trl is first imported)."""
    import transformers
    import trl

    class PlainLossSFTTrainer(trl.SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            mode = "train" if model.training else "eval"
            if mode == "train":  # the token count SFTTrainer logs, which the training card reads
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return transformers.Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return PlainLossSFTTrainer
