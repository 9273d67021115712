"""``tracebank augment``: new math prompts near the student's decision boundary (loop/promptmix.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracebank import catalog as catalog_mod
from tracebank.cli.options import CatalogOption
from tracebank.cli.summary import describe
from tracebank.ui import out


def augment_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset of math prompts to augment.")],
    method: Annotated[str, typer.Option(help="Comma-separated: numbers, combine, distractor.")] = "numbers,combine,distractor",
    count: Annotated[int, typer.Option(help="New prompts to generate.")] = 10,
    seed: Annotated[int, typer.Option(help="Same seed, same prompts: a rerun adds nothing.")] = 0,
    from_eval: Annotated[str | None, typer.Option(help="Eval run whose failed prompts are the parents.")] = None,
    selection: Annotated[str, typer.Option(
        help="auto (eval failures, else teacher disagreement, else a seeded sample), eval, disagreement or sample.")] = "auto",
    solve: Annotated[bool, typer.Option("--solve/--no-solve", help="Build teacher traces for the new prompts and score them.")] = True,
    samples: Annotated[int, typer.Option(help="Teacher traces per new prompt (a majority needs 3+).")] = 3,
    backend: Annotated[str, typer.Option(help="Teacher backend: transformers, openai, vllm or replay.")] = "transformers",
    model: Annotated[str | None, typer.Option(help="Teacher model name, local path or cached hub id.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: server URL ending in /v1.")] = None,
    catalog: CatalogOption = None,
) -> None:  # fmt: skip
    """Rewrite boundary prompts into new ones (numbers changed, two combined, a distractor added), then solve them."""
    from tracebank.builders.runner import BuildConfig
    from tracebank.loop.promptmix import AugmentConfig, augment

    build_values = {"backend": backend, "samples": samples, "model": model, "max_new_tokens": max_new_tokens,
                    "options": {"base_url": base_url} if base_url else None}  # fmt: skip
    build_cfg = BuildConfig(dataset, **{k: v for k, v in build_values.items() if v is not None}) if solve else None
    methods = tuple(m for m in method.split(",") if m.strip())
    cfg = AugmentConfig(dataset, methods, count, seed, selection, from_eval, build_cfg)
    result = augment(catalog_mod.locate(catalog), cfg)
    made = ", ".join(f"{m}: {n}" for m, n in result.by_method.items())
    out.print(
        f"augmented {dataset} from {result.parents_available} parents ({result.selection}: {result.note}; "
        f"{result.held_out_skipped} held-out prompts left out): {result.generated} prompts ({made}), "
        f"{result.prompts_new} new, {result.prompts_existing} already stored, {result.skipped} skipped"
        + (
            f" [dim](snapshot {result.snapshot})[/]"
            if result.snapshot is not None
            else " [dim](nothing new: no commit)[/]"
        )
    )
    for stage in (result.build, result.score):
        if stage is not None:
            out.print(describe(stage))
