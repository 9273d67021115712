"""``tracebank train sft|orpo|dpo``, ``tracebank pairs`` and ``tracebank eval``: the training commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tracebank import catalog as catalog_mod
from tracebank.cli.options import CatalogOption, ConfigOption
from tracebank.cli.summary import describe
from tracebank.config import make, overlay
from tracebank.ui import out

train_app = typer.Typer(help="Train students from curated releases with TRL.", no_args_is_help=True)

# Options every `tracebank train` stage takes (typer needs them spelled out per command).
ReleaseOption = Annotated[str, typer.Option(help="DATASET@vN to train on.")]
StudentOption = Annotated[str | None, typer.Option(help="Student model: embedded name, local path or cached hub id.")]
OutOption = Annotated[
    str | None, typer.Option("--out", help="Output directory (default <catalog>/models/<dataset>-v<N>-<stage>).")
]
SplitOption = Annotated[str | None, typer.Option(help="Split of the release to train on (default train).")]
IntOption = Annotated[int | None, typer.Option()]
FloatOption = Annotated[float | None, typer.Option()]
LoraOption = Annotated[int | None, typer.Option(help="LoRA rank; 0 (default) trains every weight.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Train again even if already trained.")]
PrecisionOption = Annotated[str | None, typer.Option(
    help="auto (default: bf16 on a GPU that has it, else fp16; on a CPU bf16 only where it is native, else fp32), "
    "fp32, bf16 or fp16.")]  # fmt: skip
CheckpointingOption = Annotated[bool, typer.Option(
    "--gradient-checkpointing", help="Recompute activations in the backward pass: less memory, slower.")]  # fmt: skip


def _train(cls: type, run: Any, stage: str, flags: dict[str, Any], config: Path | None, catalog: str | None) -> None:
    flags = {  # an on/off flag left off is not given: a config file's value stands
        ("output_dir" if k == "out_dir" else k): (v or None) if isinstance(v, bool) else v
        for k, v in flags.items()
        if k not in ("config", "catalog")
    }
    cfg = make(cls, overlay(config, flags), f"train {stage}")
    out.print(describe(run(catalog_mod.locate(catalog), cfg)))


@train_app.command("sft")
def train_sft_cmd(
    release: ReleaseOption, student: StudentOption = None, out_dir: OutOption = None, split: SplitOption = None,
    max_steps: IntOption = None, learning_rate: FloatOption = None, batch_size: IntOption = None,
    max_length: IntOption = None, seed: IntOption = None, lora_r: LoraOption = None,
    precision: PrecisionOption = None, gradient_checkpointing: CheckpointingOption = False,
    chunk_kinds: Annotated[str | None, typer.Option(
        help="Train each completion on only these kinds of rationale chunks, e.g. reasoning,compute.")] = None,
    chunk_min_score: Annotated[float | None, typer.Option(
        help="Train each completion on only the chunks scoring at least this (unscored chunks stay).")] = None,
    chunk_wise: Annotated[bool, typer.Option("--chunk-wise",
        help="One example per rationale chunk, the earlier chunks as context (Skip-Thinking).")] = False,
    chunk_skip: Annotated[bool, typer.Option("--chunk-skip",
        help="With --chunk-wise: leave non-reasoning chunks (restate, summary) out of targets and context.")] = False,
    force: ForceOption = False, config: ConfigOption = None, catalog: CatalogOption = None,
) -> None:  # fmt: skip
    """Supervised fine-tuning on a release's kept traces (TRL SFTTrainer); cut or chunk-wise where chunks exist."""
    flags = dict(locals())
    from tracebank.train.sft import SFTConfig, train_sft

    _train(SFTConfig, train_sft, "sft", flags, config, catalog)


def _preference(method: str, flags: dict[str, Any]) -> None:
    from tracebank.train.preference import PreferenceConfig, train_preference

    _train(PreferenceConfig, train_preference, method, {**flags, "method": method}, flags["config"], flags["catalog"])


@train_app.command("orpo")
def train_orpo_cmd(
    release: ReleaseOption, student: StudentOption = None, out_dir: OutOption = None, split: SplitOption = None,
    max_steps: IntOption = None, learning_rate: FloatOption = None, batch_size: IntOption = None,
    max_length: IntOption = None, seed: IntOption = None, lora_r: LoraOption = None,
    precision: PrecisionOption = None, gradient_checkpointing: CheckpointingOption = False,
    beta: Annotated[float | None, typer.Option(help="Weight of the odds-ratio term (default 0.1).")] = None,
    force: ForceOption = False, config: ConfigOption = None, catalog: CatalogOption = None,
) -> None:  # fmt: skip
    """ORPO on a release's stored preference pairs (run `tracebank pairs` first)."""
    _preference("orpo", dict(locals()))


@train_app.command("dpo")
def train_dpo_cmd(
    release: ReleaseOption, student: StudentOption = None, out_dir: OutOption = None, split: SplitOption = None,
    max_steps: IntOption = None, learning_rate: FloatOption = None, batch_size: IntOption = None,
    max_length: IntOption = None, seed: IntOption = None, lora_r: LoraOption = None,
    precision: PrecisionOption = None, gradient_checkpointing: CheckpointingOption = False,
    beta: Annotated[float | None, typer.Option(help="KL strength against the reference model (default 0.1).")] = None,
    force: ForceOption = False, config: ConfigOption = None, catalog: CatalogOption = None,
) -> None:  # fmt: skip
    """DPO on a release's stored preference pairs (run `tracebank pairs` first)."""
    _preference("dpo", dict(locals()))


def pairs(
    release: Annotated[str, typer.Argument(help="DATASET@vN whose kept correct teacher traces are the chosen side.")],
    split: Annotated[str, typer.Option(help="Split to pair.")] = "train",
    max_per_prompt: Annotated[int, typer.Option(help="Pairs per prompt at most.")] = 4,
    rejected_from: Annotated[
        str, typer.Option(help="Policies whose wrong traces may be rejected: student or student,teacher.")
    ] = "student",
    catalog: CatalogOption = None,
) -> None:
    """Build preference pairs: a verified-correct teacher trace vs a wrong trace of the same prompt."""
    from tracebank.train.pairs import PairsConfig, build_pairs

    cfg = PairsConfig(release, split, max_per_prompt, tuple(p.strip() for p in rejected_from.split(",") if p.strip()))
    out.print(describe(build_pairs(catalog_mod.locate(catalog), cfg)))


def eval_cmd(
    student: Annotated[
        str, typer.Option(help="Model to evaluate: a trained model directory, embedded name or hub id.")
    ],
    release: Annotated[str | None, typer.Option(help="DATASET@vN whose split to evaluate on.")] = None,
    split: Annotated[str, typer.Option(help="Split of the release.")] = "test",
    dataset: Annotated[str | None, typer.Option(help="Or: a dataset whose prompts with --split-hint to use.")] = None,
    split_hint: Annotated[str | None, typer.Option(help="With --dataset: the prompts' split hint, e.g. test.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts (by prompt_id).")] = None,
    max_new_tokens: Annotated[int, typer.Option()] = 256,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.0,
    batch_size: Annotated[int, typer.Option()] = 8,
    precision: Annotated[
        str, typer.Option(help="The student's dtype for generation: auto, fp32, bf16 or fp16.")
    ] = "auto",
    catalog: CatalogOption = None,
) -> None:
    """Sample a student on a release's split and verify its answers with the task's verifier."""
    from tracebank.train.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(student, release, split, dataset, split_hint, limit, max_new_tokens, temperature, batch_size,
                     precision=precision)  # fmt: skip
    out.print(describe(evaluate(catalog_mod.locate(catalog), cfg)))
