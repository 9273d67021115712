"""``tracebank shell``: an interactive, read-only SQL prompt on the catalog.

Statements end with ``;``. Dot-commands: ``.tables``, ``.schema NAME``, ``.help``, ``.quit``.
What is typed here reads the catalog and nothing else (:mod:`tracebank.user_sql`): the catalog is
attached read-only and the connection is locked down, so nothing typed here can change it or reach
another file.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from rich.console import Console

from tracebank import catalog as catalog_mod
from tracebank.errors import TracebankError
from tracebank.ui import frame_table
from tracebank.user_sql import SqlGuard

HELP = """statements end with ';' and may span lines. Tables: prompts, traces, scores, decisions, releases, runs,
chunks, pairs; view: curated. Time travel: SELECT ... FROM traces AT (VERSION => n).
.tables          list tables and views
.schema NAME     columns of a table or view
.help            this text
.quit            leave (also Ctrl-D)"""


def _prompted_lines() -> Iterator[str]:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    prompt = "tracebank> "
    while True:
        try:
            line = input(prompt)
        except EOFError:
            return
        prompt = "      ...> " if line.strip() and not line.strip().endswith(";") else "tracebank> "
        yield line


def _dot_command(cat: catalog_mod.Catalog, command: str, out: Console) -> bool:
    """Run a dot-command; returns False on .quit."""
    name, _, argument = command.partition(" ")
    if name in (".quit", ".exit"):
        return False
    if name == ".help":
        out.print(HELP, highlight=False)
    elif name == ".tables":
        names = cat.sql(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_catalog IN ('lake', 'temp') ORDER BY 1"
        )
        out.print(frame_table(names))
    elif name == ".schema" and argument.strip():
        out.print(frame_table(cat.sql(f"DESCRIBE {argument.strip()}")))
    else:
        out.print(f"unknown command {command!r}; .help lists them")
    return True


def _run(cat: catalog_mod.Catalog, statement: str, out: Console) -> None:
    try:
        frame = cat.sql(statement)
    except TracebankError as error:
        out.print(f"[red]error:[/] {error}", highlight=False)
        return
    out.print(frame_table(frame, max_rows=200))
    if frame.height > 200:
        out.print(f"[dim]{frame.height} rows; showing 200[/]")


def run_shell(
    location: catalog_mod.CatalogLocation,
    snapshot: int | None = None,
    lines: Iterable[str] | None = None,
    out: Console | None = None,
    guard: SqlGuard | None = None,
) -> None:
    """Read statements from ``lines`` (default: the terminal, or stdin when piped) until EOF or .quit."""
    out = out or Console()
    interactive = lines is None and sys.stdin.isatty()
    source = (
        _prompted_lines()
        if interactive
        else (lines if lines is not None else (line.rstrip("\n") for line in sys.stdin))
    )
    with catalog_mod.Catalog(location, snapshot=snapshot, guard=guard or SqlGuard()) as cat:
        if interactive:
            at = f" as of snapshot {snapshot}" if snapshot is not None else ""
            out.print(f"tracebank shell on {Path(location.home)}{at}, read-only. .help for help, .quit to leave.")
        buffer: list[str] = []
        for line in source:
            if not buffer and line.strip().startswith("."):
                if not _dot_command(cat, line.strip(), out):
                    return
                continue
            buffer.append(line)
            if line.strip().endswith(";"):
                _run(cat, "\n".join(buffer), out)
                buffer = []
        if "".join(buffer).strip():
            _run(cat, "\n".join(buffer), out)
