"""Terminal output shared by all stages: one stderr console and one progress-bar style."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)  # progress and errors
out = Console(soft_wrap=True)  # results
if not out.is_terminal:
    out = Console(soft_wrap=True, width=240)  # piped output: wide tables rather than folded cells


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Progress]:
    """A progress bar on stderr with done/total, elapsed and ETA; call ``advance(task_id)``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=not console.is_terminal,
        disable=not console.is_terminal,
    )
    with bar:
        bar.add_task(description, total=total, status="")
        yield bar


def frame_table(frame: Any, title: str | None = None, max_rows: int | None = None) -> Table:
    """A polars DataFrame as a rich table (the first ``max_rows`` rows)."""
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, overflow="fold")
    for row in frame.head(max_rows).iter_rows() if max_rows else frame.iter_rows():
        table.add_row(*("" if v is None else str(v) for v in row))
    return table
