"""``tracebank card``: render a release's data card from what the catalog stored at that release.

The card reads the catalog as of the release's snapshot (time travel), so rendering it later
gives the same card; every number comes from stored rows, never from parsing other text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2

from tracebank import catalog as catalog_mod
from tracebank.curate.release_metrics import MEMORIZATION_QUANTILES
from tracebank.curate.releases import ReleaseRef, resolve
from tracebank.data_cards.plots import render_plots
from tracebank.errors import TracebankError
from tracebank.loop.rounds import round_history
from tracebank.tasks import get_task

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
RELEASE_TRACES = """
    FROM decisions d JOIN traces t ON t.trace_id = d.trace_id JOIN prompts p ON p.prompt_id = d.prompt_id
    WHERE d.dataset = $dataset AND d.version = $version
"""


def size_category(n: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>1M")


def card_context(cat: catalog_mod.Catalog, release: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, read from stored rows of one release."""
    bind = {"dataset": release["dataset"], "version": release["version"]}
    counts = sorted(release["counts"], key=lambda c: (c["split"], not c["keep"], c["rule"]))
    kept = sum(c["n"] for c in counts if c["keep"])

    def rows(sql: str) -> list[dict[str, Any]]:
        return cat.con.execute(sql, bind).to_arrow_table().to_pylist()

    provenance = rows(f"""
        SELECT t.policy, t.model, t.backend, t.strategy, t.params.temperature AS temperature, t.params.top_p AS top_p,
               t.params.max_new_tokens AS max_new_tokens, count(*) AS traces, count(*) FILTER (WHERE d.keep) AS kept,
               coalesce(sum(t.completion_tokens), 0) AS completion_tokens, coalesce(sum(t.cost_usd), 0) AS cost_usd
        {RELEASE_TRACES} GROUP BY ALL ORDER BY ALL""")
    filters = rows("""
        SELECT filter, count(*) AS traces, count(*) FILTER (WHERE passed) AS passed,
               count(*) FILTER (WHERE NOT passed) AS failed, count(*) FILTER (WHERE passed IS NULL) AS unjudged,
               avg(passed::INT) AS pass_rate, avg(passed::INT) FILTER (WHERE keep) AS kept_pass_rate
        FROM (SELECT s.trace_id, s.filter, bool_and(s.passed) AS passed, any_value(d.keep) AS keep
              FROM scores s JOIN decisions d ON d.trace_id = s.trace_id AND d.dataset = $dataset AND d.version = $version
              GROUP BY ALL) GROUP BY filter ORDER BY filter""")
    correctness = rows(f"""
        SELECT t.policy, t.model, count(*) AS traces, sum(s.value)::BIGINT AS correct, avg(s.value) AS accuracy
        {RELEASE_TRACES.replace("WHERE", "JOIN scores s ON s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct' WHERE")}
        AND s.value IS NOT NULL GROUP BY ALL ORDER BY ALL""")
    chunks = (
        rows("""
        SELECT c.kind, count(*) AS chunks, count(DISTINCT c.trace_id) AS traces, avg(c.score) AS mean_score
        FROM chunks c JOIN decisions d ON d.trace_id = c.trace_id AND d.dataset = $dataset AND d.version = $version
        WHERE d.keep GROUP BY c.kind ORDER BY c.kind""")
        if _has_table(cat, "chunks")
        else []
    )
    metrics = (
        rows("SELECT split, metric, key, value FROM metrics WHERE dataset = $dataset AND version = $version")
        if _has_table(cat, "metrics")
        else []
    )
    samples = rows(f"""
        SELECT d.split, t.model, p.task, p.messages[-1].content AS question, p.reference, t.answer, t.rationale
        {RELEASE_TRACES} AND d.keep ORDER BY d.split DESC, d.trace_id LIMIT 3""")
    for sample in samples:
        sample["reference_answer"] = get_task(sample.pop("task")).parse(sample.pop("reference") or "")
        sample["rationale"] = _clip(sample["rationale"] or "", 1200)
        sample["question"] = _clip(sample["question"], 600)
    return {
        **release,
        "created_at": release["created_at"].strftime("%Y-%m-%d %H:%M UTC"),
        "funnel": counts,
        "kept": kept,
        "total": sum(c["n"] for c in counts),
        "kept_prompts": cat.scalar(f"SELECT count(DISTINCT d.prompt_id) {RELEASE_TRACES} AND d.keep", bind),
        "splits": sorted({c["split"] for c in counts if c["keep"]}),
        "size_category": size_category(kept),
        "provenance": provenance,
        "filters": filters,
        "correctness": correctness,
        "chunks": chunks,
        "rounds": closed_loop_rounds(cat, release),
        "diversity": diversity_tables(metrics),
        "memorization": memorization_table(metrics),
        "samples": samples,
        "policy_text": release["policy"].strip(),
    }


SCOPE_ORDER = {"input": 0, "all": 1}
DIVERSITY_METRICS = ("distinct_1", "distinct_2", "distinct_3", "pairwise_distance", "answer_entropy", "distinct_sample")


def diversity_tables(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The stored release metrics shaped for the card: one table per kind, scopes as columns."""
    scopes = sorted({m["split"] for m in metrics}, key=lambda s: (SCOPE_ORDER.get(s, 2), s))
    value = {(m["split"], m["metric"], m["key"]): m["value"] for m in metrics}

    def keyed(metric: str) -> list[tuple[str, dict[str, Any]]]:
        keys = sorted({m["key"] for m in metrics if m["metric"] == metric}, key=str)
        return [(key, {scope: value.get((scope, metric, key)) for scope in scopes}) for key in keys]

    summary = [
        (metric, {scope: value.get((scope, metric, key)) for scope in scopes})
        for metric in DIVERSITY_METRICS
        for key in sorted({m["key"] for m in metrics if m["metric"] == metric}, key=str)
    ]
    contamination = [
        (benchmark, {scope: (value.get((scope, "contaminated_traces", benchmark)) or 0,
                             value.get((scope, "contaminated_prompts", benchmark)) or 0) for scope in scopes})
        for benchmark, _ in keyed("contaminated_traces")
    ]  # fmt: skip
    safety = keyed("safety_flagged")
    safety.sort(key=lambda item: item[0] == "any")  # the total last
    return {
        "scopes": scopes,
        "summary": summary,
        "safety": safety,
        "kept_flagged": int(dict(safety).get("any", {}).get("all") or 0),
        "strategies": keyed("strategy_traces"),
        "clusters": [(key, counts.get("input")) for key, counts in keyed("dup_cluster_size")],
        "contamination": contamination,
        "kept_contaminated": int(sum(counts.get("all", (0, 0))[0] for _, counts in contamination)),
    }


def memorization_table(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The stored ``memorization`` release metrics: one row per quantile or count, scopes as columns."""
    rows = [m for m in metrics if m["metric"] == "memorization"]
    scopes = sorted({m["split"] for m in rows}, key=lambda s: (SCOPE_ORDER.get(s, 2), s))
    value = {(m["split"], m["key"]): m["value"] for m in rows}
    keys = [f"{name}_p{q}" for name, quantiles in MEMORIZATION_QUANTILES for q in quantiles]
    return {
        "scopes": scopes,
        "quantiles": [(key, {scope: value.get((scope, key)) for scope in scopes}) for key in keys],
        "counts": [(key, {scope: value.get((scope, key)) for scope in scopes}) for key in ("scored", "over_threshold")],
        "kept_over": int(value.get(("all", "over_threshold")) or 0),
    }


def _has_table(cat: catalog_mod.Catalog, name: str) -> bool:
    """Catalogs made before a table existed lack it until their next write."""
    return bool(
        cat.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' AND table_name = ?", [name]
        )
    )


def closed_loop_rounds(cat: catalog_mod.Catalog, release: dict[str, Any]) -> list[dict[str, Any]]:
    """The dataset's closed-loop rounds as stored at the release (``tracebank round``): per round the
    student's pool accuracy with its 95% interval, the prompts it failed, the round's teacher traces,
    how many verified, and how many of them this release keeps."""
    history = round_history(cat, release["dataset"])
    if not history:
        return []  # and a catalog from before traces.round is never asked for it
    kept = dict(
        cat.con.execute(
            "SELECT t.round, count(*) FROM decisions d JOIN traces t ON t.trace_id = d.trace_id "
            "WHERE d.dataset = ? AND d.version = ? AND d.keep AND t.round IS NOT NULL GROUP BY t.round",
            [release["dataset"], release["version"]],
        ).fetchall()
    )
    return [{**row, "student_name": Path(row["student"]).name, "kept": kept.get(row["round"], 0)} for row in history]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def render_markdown(context: dict[str, Any], plots: dict[str, str], license: str) -> str:
    """The card's markdown; ``plots`` maps a title to the image path relative to the card."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("tracebank.data_cards", ""),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template("card.md.j2").render(**context, plots=plots, license=license)


def write_card(
    cat: catalog_mod.Catalog, release: dict[str, Any], card_path: Path, plots_dir: Path, license: str
) -> Path:
    """Render the card and its plots (``cat`` must be at the release's snapshot); atomic per file."""
    context = card_context(cat, release)
    plots = render_plots(cat, release, plots_dir)
    relative = {title: os.path.relpath(path, card_path.parent) for title, path in plots.items()}
    text = render_markdown(context, relative, license)
    tmp = card_path.with_name(f".{card_path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(card_path)
    return card_path


def render_card(
    location: catalog_mod.CatalogLocation, ref: ReleaseRef, out_dir: str | Path | None = None, license: str = "other"
) -> Path:
    """Write ``<out_dir>/<dataset>/v<N>.md`` and its plots in ``v<N>/`` (default out_dir: the catalog's ``cards/``)."""
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ref)
    target = Path(out_dir or location.home / "cards") / release["dataset"] / f"v{release['version']}.md"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with catalog_mod.Catalog(location, snapshot=release["snapshot_id"]) as cat:
            return write_card(cat, release, target, target.parent / f"v{release['version']}", license)
    except OSError as error:
        raise TracebankError(f"cannot write the card to {target}: {error.strerror or error}") from None
