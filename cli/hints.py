"""``tracebank rationalize``: ask the teacher again, with the answer as a hint, where it failed."""

from __future__ import annotations

from typing import Annotated

import typer

from tracebank import catalog as catalog_mod
from tracebank.cli.options import CatalogOption
from tracebank.ui import out


def rationalize_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose failed prompts to ask again with a hint.")],
    backend: Annotated[
        str, typer.Option(help="Teacher backend: transformers, openai, vllm or replay.")
    ] = "transformers",
    model: Annotated[str | None, typer.Option(help="Teacher model (default: the embedded model).")] = None,
    samples: Annotated[int, typer.Option(help="Hinted traces per failed prompt.")] = 1,
    max_new_tokens: Annotated[int, typer.Option()] = 512,
    hint: Annotated[
        str, typer.Option(help="answer: give the reference's final answer; solution: the whole reference.")
    ] = "answer",
    limit: Annotated[int | None, typer.Option(help="Ask at most N failed prompts (the first by prompt_id).")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: server URL ending in /v1 ($OPENAI_BASE_URL).")] = None,
    catalog: CatalogOption = None,
) -> None:
    """Re-ask the teacher, with the reference's answer as a hint, every prompt whose teacher traces were all
    wrong; store the hinted traces tagged hinted=true, strategy 'hint', and score correctness and hint_leak."""
    from tracebank.builders.runner import BuildConfig
    from tracebank.loop.hints import RationalizeConfig, describe, rationalize

    teacher = {"backend": backend, "max_new_tokens": max_new_tokens}
    teacher.update({"model": model} if model else {})
    teacher.update({"options": {"base_url": base_url}} if base_url else {})
    cfg = RationalizeConfig(dataset, samples=samples, hint=hint, limit=limit, build=BuildConfig(dataset, **teacher))
    out.print(describe(rationalize(catalog_mod.locate(catalog), cfg)))
