"""What every training stage shares: curated examples from a release, and a training card.

Examples come out in TRL's conversational prompt-completion format (``prompt`` and
``completion`` are lists of chat messages), so TRL trains on them without adapter code and
computes the loss on the completion only.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tracebank import catalog as catalog_mod
from tracebank.errors import TracebankError
from tracebank.releases import ReleaseRef, resolve
from tracebank.tasks import get_task

CARD_JSON = "tracebank_train.json"

SPLIT_SQL = """
SELECT d.trace_id, p.task, p.messages, t.rationale
FROM decisions d JOIN traces t ON t.trace_id = d.trace_id JOIN prompts p ON p.prompt_id = d.prompt_id
WHERE d.dataset = ? AND d.version = ? AND d.keep AND d.split = ? AND t.rationale IS NOT NULL
ORDER BY d.trace_id
"""


@dataclass(frozen=True)
class TrainingData:
    release: dict[str, Any]
    examples: list[dict[str, Any]]


def load_split(location: catalog_mod.CatalogLocation, ref: ReleaseRef, split: str) -> TrainingData:
    """Kept traces of one split of a release, as prompt/completion conversations."""
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ref)
        rows = cat.arrow(SPLIT_SQL, [release["dataset"], release["version"], split]).to_pylist()
    if not rows:
        splits = sorted({c["split"] for c in release["counts"] if c["keep"]})
        raise TracebankError(
            f"{release['dataset']}@v{release['version']} keeps no traces in split {split!r}; splits with kept traces: {', '.join(splits) or 'none'}"
        )
    examples = [
        {
            "trace_id": row["trace_id"],
            "prompt": get_task(row["task"]).render(row["messages"]),
            "completion": [{"role": "assistant", "content": row["rationale"]}],
        }
        for row in rows
    ]
    return TrainingData(release, examples)


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


def training_readme(card: dict[str, Any]) -> str:
    """A model card: where the data came from, how it was trained, and what came out."""
    release, metrics = card["release"], card["metrics"]
    config_rows = "\n".join(f"| {k} | {v} |" for k, v in card["config"].items())
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
| runtime | {metrics["runtime_s"]:.1f} s |
| trl / transformers / torch | {card["versions"]["trl"]} / {card["versions"]["transformers"]} / {card["versions"]["torch"]} |

## Config

| field | value |
|---|---|
{config_rows}
"""
