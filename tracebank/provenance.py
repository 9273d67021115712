"""What produced a piece of data: code version, git SHA, and the stage-run rows that record it."""

from __future__ import annotations

import subprocess
import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from tracebank import __version__, records
from tracebank.hashing import canonical_json


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the tracebank checkout in use (``+dirty`` if it has local changes), or None."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def new_run_id(stage: str) -> str:
    return f"{stage}-{datetime.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def run_row(
    run_id: str, stage: str, dataset: str, started_at: datetime, config: dict[str, Any], counters: dict[str, float]
) -> pa.Table:
    """One row of the ``runs`` table: a stage's config and its counters (stats are outputs)."""
    row = {
        "run_id": run_id,
        "stage": stage,
        "dataset": dataset,
        "started_at": started_at,
        "finished_at": records.now(),
        "config": canonical_json(config).decode(),
        "counters": [{"name": k, "value": float(v)} for k, v in counters.items()],
        "git_sha": git_sha(),
        "code_version": __version__,
    }
    return records.to_table([row], records.RUNS)
