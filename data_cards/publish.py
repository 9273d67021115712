"""``tracebank publish``: a release as an HF-datasets folder, or uploaded to the Hugging Face Hub.

The folder holds one Parquet file per split (rows in TRL's conversational ``messages`` format
plus provenance columns), the data card as README.md (its YAML header tells ``load_dataset``
where each split is), the card's plots, and ``tracebank_release.json`` with the release row.
``datasets.load_dataset(DIR)`` loads it offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tracebank import catalog as catalog_mod
from tracebank.builders.cache import alive
from tracebank.curate.releases import ReleaseRef, resolve
from tracebank.data_cards.render import write_card
from tracebank.errors import TracebankError, cannot_write
from tracebank.tasks import get_task

MARKER = "tracebank_release.json"
HUB_PREFIX = "hf://"
ROWS_SQL = """
SELECT d.split, d.trace_id, d.prompt_id, d.rule, d.reason, p.task, p.messages AS prompt_messages, p.reference,
       t.rationale, t.answer, t.model, t.policy, t.backend, t.strategy, t.sample_idx, t.completion_tokens
FROM decisions d JOIN traces t ON t.trace_id = d.trace_id JOIN prompts p ON p.prompt_id = d.prompt_id
WHERE d.dataset = ? AND d.version = ? AND d.keep AND t.rationale IS NOT NULL
ORDER BY d.split, d.trace_id
"""


@dataclass(frozen=True)
class PublishResult:
    release: str
    target: str  # a directory, or hf://ORG/NAME
    splits: dict[str, int]  # rows per split


def _split_tables(rows: list[dict[str, Any]]) -> dict[str, pa.Table]:
    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        stored = row.pop("prompt_messages")
        row["question"] = stored[-1]["content"]
        prompt = get_task(row["task"]).render(stored)
        row["messages"] = [*prompt, {"role": "assistant", "content": row["rationale"]}]
        by_split.setdefault(row.pop("split"), []).append(row)
    return {split: pa.Table.from_pylist(split_rows) for split, split_rows in by_split.items()}


def export_release(
    location: catalog_mod.CatalogLocation, ref: ReleaseRef, target: Path, license: str = "other"
) -> PublishResult:
    """Write the release into ``target`` (created, or replaced if it holds an earlier export of this dataset)."""
    target = _checked_target(Path(target))
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ref)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _recover(target)  # first: a killed export may have left another dataset's export aside
    except OSError as error:
        raise TracebankError(f"cannot write to {target.parent}: {error.strerror or error}") from None
    if _exported_dataset(target) not in (None, release["dataset"]):
        raise TracebankError(
            f"{target} holds an export of dataset {_exported_dataset(target)!r}, not {release['dataset']!r}: "
            "choose another directory (only an earlier export of the same dataset is replaced)"
        )
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent))
        staging.chmod(_directory_mode())  # mkdtemp makes it private; the export is an ordinary folder
    except OSError as error:
        raise TracebankError(f"cannot write to {target.parent}: {error.strerror or error}") from None
    try:
        with catalog_mod.Catalog(location, snapshot=release["snapshot_id"]) as cat:
            tables = _split_tables(cat.arrow(ROWS_SQL, [release["dataset"], release["version"]]).to_pylist())
            if not tables:
                raise TracebankError(f"{release['dataset']}@v{release['version']} keeps no traces: nothing to publish")
            (staging / "data").mkdir()
            for split, table in tables.items():
                pq.write_table(table, staging / "data" / f"{split}-00000-of-00001.parquet")
            write_card(cat, release, staging / "README.md", staging / "plots", license)
        (staging / MARKER).write_bytes(orjson.dumps(release, option=orjson.OPT_INDENT_2, default=str))
        _swap(staging, target)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):  # a full disk: the earlier export, if any, is untouched
            raise cannot_write(str(target.parent), error) from None
        raise
    return PublishResult(
        f"{release['dataset']}@v{release['version']}", str(target), {s: t.num_rows for s, t in tables.items()}
    )


def _checked_target(target: Path) -> Path:
    """The absolute target, if writing there replaces nothing but an earlier tracebank export.

    Refused: a system location (also reached through '..' or links), a link (the export would land
    elsewhere), a file, a non-empty directory that holds no export.
    """
    target = target.absolute()
    catalog_mod.refuse_system_path(target, "--to")
    if target.is_symlink():
        raise TracebankError(f"--to {target} is a link to {os.path.realpath(target)}: give the directory itself")
    if target.exists() and not target.is_dir():
        raise TracebankError(f"--to {target} is a file: choose an empty or new directory")
    if target.exists() and any(target.iterdir()) and _exported_dataset(target) is None:
        raise TracebankError(f"{target} is not empty and holds no tracebank export: choose an empty or new directory")
    return target


def _exported_dataset(target: Path) -> str | None:
    """The dataset of the tracebank export in ``target``; None when it holds none (or a marker that is not ours)."""
    marker = target / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        dataset = orjson.loads(marker.read_bytes()).get("dataset")
    except (orjson.JSONDecodeError, AttributeError, OSError):
        return None
    return dataset if isinstance(dataset, str) else None


def _recover(target: Path) -> None:
    """Clean up after an export that was killed: remove its staging folder, and the earlier export it
    had moved aside (or put that back, when the new one never took its place)."""
    for path in target.parent.glob(f".{target.name}.*"):
        kind, _, rest = path.name[len(target.name) + 2 :].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("staging", "old") or not pid.isdigit() or alive(int(pid)):
            continue
        if kind == "old" and not target.exists():
            path.rename(target)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _directory_mode() -> int:
    """The mode a new directory gets under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _swap(staging: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


class HubClient(Protocol):
    """The two Hub calls publishing needs (huggingface_hub.HfApi has both)."""

    def create_repo(self, repo_id: str, *, repo_type: str, private: bool | None, exist_ok: bool) -> Any: ...

    def upload_folder(self, *, repo_id: str, folder_path: str, repo_type: str, commit_message: str) -> Any: ...


def hub_client() -> HubClient:
    """An authenticated HfApi; a missing token is a clear error before anything is written."""
    import huggingface_hub

    token = huggingface_hub.get_token()
    if not token:
        raise TracebankError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then publish again")
    return huggingface_hub.HfApi(token=token)


def publish(
    location: catalog_mod.CatalogLocation,
    ref: ReleaseRef,
    to: str,
    license: str = "other",
    private: bool = False,
    client: HubClient | None = None,
) -> PublishResult:
    """Publish to a directory, or to ``hf://ORG/NAME`` (exported to a temp dir, then uploaded)."""
    if not to.startswith(HUB_PREFIX):
        return export_release(location, ref, Path(to), license)
    repo_id = to[len(HUB_PREFIX) :].strip("/")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise TracebankError(f"--to {to!r}: expected hf://ORG/NAME")
    client = client or hub_client()
    with tempfile.TemporaryDirectory(prefix="tracebank-publish-") as tmp:
        result = export_release(location, ref, Path(tmp) / "export", license)
        client.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        client.upload_folder(
            repo_id=repo_id,
            folder_path=result.target,
            repo_type="dataset",
            commit_message=f"tracebank: publish {result.release}",
        )
    return PublishResult(result.release, to, result.splits)
