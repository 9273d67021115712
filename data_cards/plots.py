"""PNG plots for a release's data card, drawn from stored rows (matplotlib, no display needed).

Each plot is drawn only when its data exists: pass rates need correctness scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracebank import catalog as catalog_mod

RELEASE = (
    "FROM decisions d JOIN traces t ON t.trace_id = d.trace_id WHERE d.dataset = $dataset AND d.version = $version"
)
LENGTHS_SQL = f"SELECT d.split, length(coalesce(t.rationale, '')) AS chars {RELEASE} AND d.keep"
PASS_RATE_SQL = f"""
SELECT {{group}} AS label, avg(s.value) AS pass_rate, count(*) AS traces
{RELEASE.replace("WHERE", "JOIN scores s ON s.trace_id = t.trace_id AND s.filter = 'correctness' AND s.metric = 'correct' WHERE")}
  AND s.value IS NOT NULL GROUP BY ALL ORDER BY label
"""
PER_PROMPT_SQL = f"SELECT d.split, count(*) FILTER (WHERE d.keep) AS kept {RELEASE} GROUP BY d.split, d.prompt_id"


def render_plots(cat: catalog_mod.Catalog, release: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Write the card's plots into ``directory``; returns {title: path} of those drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    bind = {"dataset": release["dataset"], "version": release["version"]}

    def rows(sql: str) -> list[dict[str, Any]]:
        return cat.con.execute(sql, bind).to_arrow_table().to_pylist()

    directory.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path] = {}
    plt.rcParams.update({"figure.dpi": 100, "font.size": 9})

    lengths = rows(LENGTHS_SQL)
    if lengths:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for split in sorted({r["split"] for r in lengths}):
            values = [r["chars"] for r in lengths if r["split"] == split]
            ax.hist(values, bins=30, histtype="step", linewidth=1.5, label=f"{split} ({len(values)})")
        ax.set(xlabel="rationale length (characters)", ylabel="kept traces", title="Trace length by split")
        ax.legend()
        drawn["Trace length by split"] = _save(fig, directory / "trace_length.png")

    by_strategy, by_policy = (
        rows(PASS_RATE_SQL.format(group="t.strategy")),
        rows(PASS_RATE_SQL.format(group="t.policy")),
    )
    if by_strategy:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
        for ax, data, title in ((axes[0], by_strategy, "by strategy"), (axes[1], by_policy, "by policy")):
            bars = ax.bar([r["label"] for r in data], [r["pass_rate"] for r in data], color="#4c72b0")
            ax.bar_label(bars, labels=[f"n={r['traces']}" for r in data], fontsize=8)
            ax.set(title=f"Correctness pass rate {title}", ylim=(0, 1.1))
            ax.tick_params(axis="x", rotation=20)
        axes[0].set_ylabel("pass rate (all traces)")
        drawn["Pass rate by strategy and policy"] = _save(fig, directory / "pass_rate.png")

    per_prompt = rows(PER_PROMPT_SQL)
    if per_prompt:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        top = max(r["kept"] for r in per_prompt)
        for split in sorted({r["split"] for r in per_prompt}):
            values = [r["kept"] for r in per_prompt if r["split"] == split]
            ax.hist(values, bins=range(0, top + 2), histtype="step", linewidth=1.5, align="left", label=split)
        ax.set(xlabel="kept traces per prompt", ylabel="prompts", title="Samples per prompt")
        ax.legend()
        drawn["Samples per prompt"] = _save(fig, directory / "samples_per_prompt.png")
    return drawn


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same data, same bytes
    plt.close(fig)
    return path
