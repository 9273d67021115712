"""Command-line options shared by several commands (typer needs them spelled out per command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracebank import catalog as catalog_mod

CatalogOption = Annotated[
    str | None,
    typer.Option("--catalog", envvar=catalog_mod.CATALOG_ENV, help="Catalog directory (default ./.tracebank)."),
]


ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML file of settings (flags override it).")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Stop a query that runs longer (seconds).")]
MaxResultRowsOption = Annotated[
    int, typer.Option("--max-result-rows", help="Refuse a result with more rows (add a LIMIT or aggregate).")
]
