"""Stage configs from YAML files, recipes and CLI flags: one loader, one field check, one-line errors."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from tracebank.errors import TracebankError


def load_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; a missing file or a syntax error is one clear line."""
    path = Path(path)
    if not path.is_file():
        raise TracebankError(f"no such {what}: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise TracebankError(f"{path}: invalid YAML{where} ({problem})") from None


def check_keys(values: dict[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    """Reject unknown keys, naming the first and listing the allowed ones (catches typos early)."""
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise TracebankError(f"{where}: unknown key {unknown[0]!r}; keys are {', '.join(sorted(allowed))}")
    return values


def field_names(cls: type, *exclude: str) -> set[str]:
    return {f.name for f in fields(cls)} - set(exclude)


def make(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate a config dataclass from a mapping; its ``__post_init__`` validates the values."""
    return cls(**check_keys(values, field_names(cls), where))


def overlay(config_file: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Values from a YAML config file, overridden by the command-line flags that were given (not None)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        loaded = load_yaml(config_file, "config file") or {}
        if not isinstance(loaded, dict):
            raise TracebankError(f"{config_file}: expected a mapping of config fields")
        values.update(loaded)
    values.update({k: v for k, v in flags.items() if v is not None})
    return values


def parse_map_items(items: list[tuple[str, str]], allowed: list[str]) -> dict[str, str]:
    """``--map`` pairs as a dict: an unknown key or a key given twice is one clear error."""
    mapping: dict[str, str] = {}
    for key, value in items:
        if key not in allowed:
            raise TracebankError(f"--map: unknown key {key!r}; keys are {', '.join(allowed)}")
        if key in mapping:
            raise TracebankError(f"--map: {key!r} given twice")
        mapping[key] = value
    return mapping
