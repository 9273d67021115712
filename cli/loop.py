"""``tracebank round``: one closed-loop round (the ``loop`` recipe step runs several)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracebank import catalog as catalog_mod
from tracebank.cli.options import CatalogOption, ConfigOption
from tracebank.config import make, overlay
from tracebank.ui import out


def round_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose prompt pool the student is evaluated on.")],
    student: Annotated[str | None, typer.Option(
        help="Student to evaluate: a trained model directory, embedded name or hub id.")] = None,
    round_number: Annotated[int | None, typer.Option("--round",
        help="Round number (default: the one after the last completed round; a rerun sends nothing new).")] = None,
    split_hint: Annotated[str | None, typer.Option(help="The pool: prompts with this split hint (default train).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts of the pool (by prompt_id).")] = None,
    feedback: Annotated[bool | None, typer.Option("--feedback/--no-feedback",
        help="Tell the teacher the student's wrong answer (never the reference); default on.")] = None,
    hints: Annotated[bool, typer.Option("--hints",
        help="Also rationalize, with the reference as a hint, the failed prompts the teacher failed too.")] = False,
    backend: Annotated[str | None, typer.Option(help="Teacher backend: transformers, openai, vllm or replay.")] = None,
    model: Annotated[str | None, typer.Option(help="Teacher model name, local path or cached hub id.")] = None,
    samples: Annotated[int | None, typer.Option(help="Teacher traces per failed prompt.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Teacher tokens per trace at most.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: server URL ending in /v1.")] = None,
    eval_max_new_tokens: Annotated[int | None, typer.Option(help="Student tokens per answer at most.")] = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
) -> None:  # fmt: skip
    """Evaluate a student, send the prompts it fails back to the teacher, score the new traces."""
    from tracebank.loop.rounds import RoundConfig, run_round

    teacher = {"backend": backend, "model": model, "samples": samples, "max_new_tokens": max_new_tokens}
    flags = {"student": student, "round": round_number, "split_hint": split_hint, "limit": limit,
             "feedback": feedback, "hints": hints or None, "eval_max_new_tokens": eval_max_new_tokens}  # fmt: skip
    values = overlay(config, flags)
    build = {**(values.get("build") or {}), **{k: v for k, v in teacher.items() if v is not None}}
    if base_url is not None:
        build["options"] = {**(build.get("options") or {}), "base_url": base_url}
    cfg = make(RoundConfig, {**values, "dataset": dataset, "build": build}, "round")
    out.print(str(run_round(catalog_mod.locate(catalog), cfg)))
