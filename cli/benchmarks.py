"""``tracebank benchmark add|list|remove``: the benchmarks decontamination checks traces against."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tracebank import benchmarks
from tracebank import catalog as catalog_mod
from tracebank.cli.options import CatalogOption
from tracebank.ui import out

benchmark_app = typer.Typer(
    help="Benchmarks that `tracebank score --filter decontam` checks traces against.", no_args_is_help=True
)


@benchmark_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Name to check it by, e.g. mmlu-test.")],
    path: Annotated[str, typer.Argument(help="A .jsonl(.gz), .json or .parquet file, or an HF dataset directory.")],
    column_map: Annotated[
        str, typer.Option("--map", help="Fields: text=question+answer (each checked on its own), id=id (optional).")
    ],
    replace: Annotated[bool, typer.Option("--replace", help="Register a name again (a changed file).")] = False,
    catalog: CatalogOption = None,
) -> None:
    """Register a benchmark file: its path, fields, item count and a digest of its bytes."""
    benchmark, snapshot = benchmarks.register(catalog_mod.locate(catalog), name, path, column_map, replace)
    done = f"snapshot {snapshot}" if snapshot is not None else "already registered as given; nothing written"
    out.print(f"benchmark {benchmark.name}: {benchmark.items} items from {benchmark.source} ({done})")


@benchmark_app.command("list")
def list_cmd(catalog: CatalogOption = None) -> None:
    """Show the built-in and registered benchmarks."""
    location = catalog_mod.locate(catalog)
    table = Table("name", "kind", "source", "text fields", "id field", "items", "digest", "status", title="benchmarks")
    if location.exists():
        with catalog_mod.Catalog(location) as cat:
            listed = benchmarks.available(cat)
    else:
        listed = benchmarks.available(None)
    for b in listed:
        shown = benchmarks.describe(b)
        kind = "built-in" if b.builtin else "registered"
        id_field = b.id_field or "row number"
        table.add_row(b.name, kind, shown["source"], "+".join(b.text_fields), id_field, shown["items"],
                      shown["digest"], shown["status"])  # fmt: skip
    out.print(table)


@benchmark_app.command("remove")
def remove_cmd(name: Annotated[str, typer.Argument()], catalog: CatalogOption = None) -> None:
    """Unregister a benchmark (scores already stored keep what they were checked against)."""
    snapshot = benchmarks.remove(catalog_mod.locate(catalog), name)
    out.print(f"removed benchmark {name} (snapshot {snapshot})")
