"""One-line descriptions of each stage's result, shared by the CLI commands and ``tracebank run``."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from tracebank import catalog as catalog_mod

if TYPE_CHECKING:  # named, not imported: a command that prints one result need not import every stage
    from tracebank.builders.runner import BuildResult
    from tracebank.curate.releases import CurateResult
    from tracebank.filters.runner import ScoreResult
    from tracebank.importer import ImportResult
    from tracebank.train.base import TrainResult
    from tracebank.train.evaluate import EvalResult
    from tracebank.train.pairs import PairsResult


def _snapshot(snapshot: int | None) -> str:
    return f" [dim](snapshot {snapshot})[/]" if snapshot is not None else " [dim](nothing new: no commit)[/]"


def _imported(result: ImportResult) -> str:
    return (
        f"imported {result.prompts_new} new prompts ({result.prompts_existing} already present) and "
        f"{result.traces_new} new traces ({result.traces_existing} already present) into {result.dataset} "
        f"from {result.rows} rows" + _snapshot(result.snapshot)
    )


def _built(result: BuildResult) -> str:
    cost = f", ${result.cost_usd:.4f}" if result.cost_usd else ""
    stopped = (
        f"; stopped at the {result.stopped} cap with {result.unsent} requests unsent (raise it and rerun to go on)"
        if result.stopped
        else ""
    )
    return (
        f"built {result.traces_new} traces for {result.prompts} prompts of {result.dataset}: {result.sent} requests "
        f"sent, {result.cached} answered from cache, {result.existing} already in the catalog, {result.failed} failed; "
        f"{result.completion_tokens} completion tokens{cost} in {result.seconds:.1f}s{stopped}"
        + _snapshot(result.snapshot)
    )


def _scored(result: ScoreResult) -> str:
    parts = [
        f"{s.filter}: {s.passed} passed, {s.failed} failed, {s.unjudged} not judged ({s.changed} changed)"
        for s in result.filters
    ]
    return f"scored {result.dataset}: " + "; ".join(parts) + _snapshot(result.snapshot)


def _curated(result: CurateResult) -> str:
    kept = sum(c["n"] for c in result.counts if c["keep"])
    total = sum(c["n"] for c in result.counts)
    if result.created:
        return f"released {result.dataset}@v{result.version} (snapshot {result.snapshot_id}): kept {kept} of {total} traces"
    return f"no new release: the same inputs and policy give the same decisions as {result.dataset}@v{result.version}"


def _trained(result: TrainResult) -> str:
    if result.skipped:
        return f"already trained on {result.release} with this config: {result.output_dir} (--force to retrain)"
    m = result.metrics
    return (
        f"trained on {result.release} ({result.examples} examples, {int(m['steps'])} steps, "
        f"loss {m['first_loss']:.3f} -> {m['last_loss']:.3f}, {m['runtime_s']:.0f}s): {result.output_dir}"
    )


def _paired(result: PairsResult) -> str:
    return (
        f"paired {result.prompts_paired} of {result.prompts} prompts of {result.release}: {result.pairs_new} new pairs "
        f"({result.pairs_existing} already stored)" + _snapshot(result.snapshot)
    )


def _evaluated(result: EvalResult) -> str:
    return (
        f"{result.student} on {result.release} {result.split}: accuracy {100 * result.accuracy:.1f}% "
        f"({result.correct}/{result.verified}), 95% CI [{100 * result.ci_low:.1f}%, {100 * result.ci_high:.1f}%] "
        f"[dim](eval run {result.eval_run})[/]"
    )


# Each stage's result, by its class's module and name.
DESCRIBE: dict[tuple[str, str], Callable[[Any], str]] = {
    ("tracebank.importer", "ImportResult"): _imported,
    ("tracebank.builders.config", "BuildResult"): _built,
    ("tracebank.filters.runner", "ScoreResult"): _scored,
    ("tracebank.curate.releases", "CurateResult"): _curated,
    ("tracebank.train.base", "TrainResult"): _trained,
    ("tracebank.train.pairs", "PairsResult"): _paired,
    ("tracebank.train.evaluate", "EvalResult"): _evaluated,
}


def describe(result: Any) -> str:
    """What a stage did, in one line."""
    line = DESCRIBE.get((type(result).__module__, type(result).__qualname__))
    if line is not None:
        return line(result)
    if isinstance(result, Path):
        return f"wrote {result}"
    return str(result)


def print_step(console: Console, number: int, step: Any, result: Any) -> None:
    console.print(f"[bold]{number}. {step.summary}[/]: {describe(result)}")


def print_summary(console: Console, location: catalog_mod.CatalogLocation, results: list[tuple[Any, Any]]) -> None:
    """After a recipe: what it made, where, and the SQL to look at it."""
    by_kind = {step.kind: result for step, result in results}
    release = by_kind.get("curate")
    # The default home, resolved without locate()'s checks: this only decides whether to print --catalog.
    default = Path(os.environ.get(catalog_mod.CATALOG_ENV) or catalog_mod.DEFAULT_HOME).expanduser().absolute()
    default = default == location.home
    flag = "" if default else f" --catalog {shlex.quote(str(location.home))}"
    console.print("\n[bold]made[/]")
    console.print(f"  catalog  {location.home} ({location.backend} metadata, Parquet under {location.data_url})")
    if release is not None:
        console.print(f"  release  {release.dataset}@v{release.version} (DuckLake snapshot {release.snapshot_id})")
    if "card" in by_kind:
        console.print(f"  card     {by_kind['card']}")
    if "train_sft" in by_kind:
        console.print(f"  student  {by_kind['train_sft'].output_dir}")
    if release is None:
        return
    d, v, s = release.dataset, release.version, release.snapshot_id
    console.print("\n[bold]look at it[/] (from any shell)")
    for command in (
        f"tracebank versions {d}{flag}",
        f"""tracebank sql "SELECT split, rule, keep, count(*) AS traces FROM decisions WHERE dataset = '{d}' AND version = {v} GROUP BY ALL ORDER BY ALL"{flag}""",
        f"""tracebank sql "SELECT t.model, round(avg(s.value), 3) AS accuracy, count(*) AS traces FROM scores s JOIN traces t USING (trace_id) WHERE s.metric = 'correct' AND t.dataset = '{d}' GROUP BY ALL"{flag}""",
        f"""tracebank sql "SELECT split, rationale FROM curated WHERE dataset = '{d}' AND version = {v} LIMIT 3"{flag}""",
        f"""tracebank sql "SELECT count(*) AS traces FROM traces AT (VERSION => {s - 1}) WHERE dataset = '{d}'"{flag}""",
    ):
        console.print(f"  {command}", highlight=False, soft_wrap=True)
