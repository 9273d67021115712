"""``tracebank run RECIPE.yaml``: a whole pipeline from one YAML file.

A recipe names a dataset, optional ``vars`` (overridable with ``--set name=value``) and ordered
steps: ``import``, ``build``, ``score``, ``curate``, ``card``, ``pairs``, ``train_sft``,
``train_orpo``, ``train_dpo``, ``eval``, ``loop`` (closed-loop rounds: ``tracebank.loop.steps``). Each
step's keys are the fields of that stage's config; pairing, training and evaluation default to the
dataset's latest release. Every step is validated before the first one runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tracebank import catalog as catalog_mod
from tracebank import sources
from tracebank.builders.runner import BuildConfig, build
from tracebank.config import check_keys, field_names, load_yaml
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef, curate
from tracebank.data_cards.render import render_card
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score
from tracebank.importer import ColumnMap, ImportConfig, import_data
from tracebank.loop.steps import loop_step
from tracebank.train.evaluate import EvalConfig, evaluate
from tracebank.train.pairs import PairsConfig, build_pairs
from tracebank.train.preference import PreferenceConfig, train_preference
from tracebank.train.sft import SFTConfig, train_sft

VAR = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class Step:
    kind: str
    run: Callable[[catalog_mod.CatalogLocation], Any]
    summary: str


def _substitute(value: Any, variables: dict[str, Any], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if not isinstance(value, str):
        return value
    for name in VAR.findall(value):
        if name not in variables:
            raise TracebankError(f"{where}: unknown variable ${{{name}}}; vars: {', '.join(variables) or 'none'}")
    whole = VAR.fullmatch(value)
    if whole:
        return variables[whole.group(1)]  # keeps the variable's type (int, float, ...)
    return VAR.sub(lambda m: str(variables[m.group(1)]), value)


def _import_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    allowed = field_names(ImportConfig, "dataset", "column_map", "path") | {"source", "path", "map"}
    options = dict(check_keys(options, allowed, where))
    if ("source" in options) == ("path" in options):
        raise TracebankError(f"{where}: give exactly one of source (a named source) or path")
    if "map" not in options:
        raise TracebankError(f"{where}: needs a column map, e.g. map: {{prompt: question}}")
    column_map = ColumnMap.parse(options.pop("map"))
    source = options.pop("source", None)
    path = options.pop("path", None)
    if source is not None and source not in sources.names():
        raise TracebankError(f"{where}: unknown source {source!r}; known sources: {', '.join(sources.names())}")

    def run(location: catalog_mod.CatalogLocation) -> Any:
        return import_data(location, ImportConfig(str(path or sources.resolve(source)), dataset, column_map, **options))

    ImportConfig("-", dataset, column_map, **options)  # validate now, before any step runs
    return Step("import", run, f"import {source or path}")


def _build_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    cfg = BuildConfig(dataset=dataset, **check_keys(options, field_names(BuildConfig, "dataset"), where))
    return Step("build", lambda location: build(location, cfg), f"build with {cfg.backend}:{cfg.model}")


def _score_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    options = check_keys(options, {"filters", "options", "executor", "ray_address"}, where)
    cfg = ScoreConfig(
        dataset,
        tuple(options.get("filters", ScoreConfig.filters)),
        options.get("options") or {},
        options.get("executor", ScoreConfig.executor),
        options.get("ray_address"),
    )
    return Step("score", lambda location: score(location, cfg), f"score with {', '.join(cfg.filters)}")


def _curate_step(dataset: str, options: dict[str, Any], where: str, base: Path) -> Step:
    options = check_keys(options, {"policy", "message"}, where)
    if "policy" not in options or "message" not in options:
        raise TracebankError(f"{where}: needs policy (a file or a mapping) and message")
    if isinstance(options["policy"], dict):
        policy, text = Policy.from_dict(options["policy"], where), yaml.safe_dump(options["policy"], sort_keys=False)
    else:
        policy, text = Policy.load(base / options["policy"])
    return Step(
        "curate",
        lambda location: curate(location, dataset, policy, text, options["message"]),
        f"curate with {policy.name}",
    )


def _card_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    options = check_keys(options, {"out", "license", "release"}, where)
    ref = ReleaseRef.parse(options.get("release", dataset))
    return Step(
        "card",
        lambda location: render_card(location, ref, options.get("out"), options.get("license", "other")),
        "render the data card",
    )


def _train_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    options = check_keys(options, field_names(SFTConfig), where)
    cfg = SFTConfig(**{"release": f"{dataset}@latest", **options})
    return Step("train_sft", lambda location: train_sft(location, cfg), f"SFT {cfg.student} on {cfg.release}")


def _preference_step(method: str) -> Callable[[str, dict[str, Any], str], Step]:
    def make(dataset: str, options: dict[str, Any], where: str) -> Step:
        options = check_keys(options, field_names(PreferenceConfig, "method"), where)
        cfg = PreferenceConfig(**{"release": f"{dataset}@latest", **options, "method": method})
        summary = f"{method.upper()} {cfg.student} on {cfg.release}"
        return Step(f"train_{method}", lambda location: train_preference(location, cfg), summary)

    return make


def _pairs_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    options = check_keys(options, field_names(PairsConfig), where)
    if "rejected_from" in options:
        options["rejected_from"] = tuple(options["rejected_from"])
    cfg = PairsConfig(**{"release": f"{dataset}@latest", **options})
    return Step("pairs", lambda location: build_pairs(location, cfg), f"pair {cfg.release}")


def _eval_step(dataset: str, options: dict[str, Any], where: str) -> Step:
    options = check_keys(options, field_names(EvalConfig), where)
    if "student" not in options:
        raise TracebankError(f"{where}: needs student (a model name or directory)")
    if "dataset" not in options and "release" not in options:
        options["release"] = f"{dataset}@latest"
    cfg = EvalConfig(**options)
    return Step("eval", lambda location: evaluate(location, cfg), f"evaluate {cfg.student}")


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[str, list[Step]]:
    """The recipe's dataset and its validated steps; ``overrides`` replace declared vars."""
    path = Path(path)
    recipe = load_yaml(path, "recipe")
    if not isinstance(recipe, dict):
        raise TracebankError(f"{path}: expected a mapping with dataset and steps")
    check_keys(recipe, {"dataset", "vars", "steps"}, str(path))
    dataset, variables, steps = recipe.get("dataset"), dict(recipe.get("vars") or {}), recipe.get("steps")
    if not isinstance(dataset, str) or not isinstance(steps, list) or not steps:
        raise TracebankError(f"{path}: needs a dataset name and a non-empty list of steps")
    for name, value in (overrides or {}).items():
        if name not in variables:
            raise TracebankError(
                f"--set {name}: the recipe declares no such var; vars: {', '.join(variables) or 'none'}"
            )
        variables[name] = value
    makers = {
        "import": _import_step,
        "build": _build_step,
        "score": _score_step,
        "card": _card_step,
        "train_sft": _train_step,
        "pairs": _pairs_step,
        "train_orpo": _preference_step("orpo"),
        "train_dpo": _preference_step("dpo"),
        "eval": _eval_step,
    }
    loaded = []
    for number, entry in enumerate(steps, start=1):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise TracebankError(f"{path}: step {number} must be a mapping with one key, the step kind")
        ((kind, options),) = entry.items()
        where = f"{path}: step {number} ({kind})"
        options = _substitute(options or {}, variables, where)
        if not isinstance(options, dict):
            raise TracebankError(f"{where}: options must be a mapping")
        if kind == "curate":
            loaded.append(_curate_step(dataset, options, where, path.parent))
        elif kind == "loop":
            loaded.append(Step("loop", *loop_step(dataset, options, where, path.parent)))
        elif kind in makers:
            loaded.append(makers[kind](dataset, options, where))
        else:
            raise TracebankError(f"{where}: unknown step kind; kinds are {', '.join([*makers, 'curate', 'loop'])}")
    return dataset, loaded


def run_recipe(
    location: catalog_mod.CatalogLocation,
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    on_step: Callable[[int, Step, Any], None] | None = None,
) -> list[tuple[Step, Any]]:
    """Run every step in order; returns (step, result) pairs."""
    _, steps = load_recipe(path, overrides)
    catalog_mod.ensure_writable(location)
    results = []
    for number, step in enumerate(steps, start=1):
        result = step.run(location)
        results.append((step, result))
        if on_step:
            on_step(number, step, result)
    return results
