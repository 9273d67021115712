"""The ``tracebank`` command: a thin typer layer over the Python API (one function per command)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.table import Table

from tracebank import catalog as catalog_mod
from tracebank.cli import augment, benchmarks, hints, loop, train
from tracebank.cli.options import CatalogOption, MaxResultRowsOption, TimeoutOption
from tracebank.cli.summary import describe
from tracebank.config import make, overlay
from tracebank.errors import TracebankError
from tracebank.ui import console as err_console
from tracebank.ui import frame_table, out
from tracebank.user_sql import SqlGuard

app = typer.Typer(
    help="Build, curate, version and publish datasets of teacher reasoning traces; train students from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(train.train_app, name="train")
app.add_typer(benchmarks.benchmark_app, name="benchmark")
app.command()(train.pairs)
app.command("eval")(train.eval_cmd)
app.command("augment")(augment.augment_cmd)
app.command("round")(loop.round_cmd)
app.command("rationalize")(hints.rationalize_cmd)


@app.command()
def init(
    catalog: CatalogOption = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Metadata database: duckdb (one writer), sqlite (readers during writes) or postgres (teams)."
        ),
    ] = "duckdb",
    metadata: Annotated[
        str | None,
        typer.Option(help="postgres: libpq connection string, e.g. 'dbname=tracebank host=db user=me' (no password)."),
    ] = None,
    data_path: Annotated[
        str | None,
        typer.Option(help="postgres: where the Parquet data lives: a local directory or s3://bucket/prefix."),
    ] = None,
) -> None:
    """Create an empty catalog, or point this catalog home at an existing PostgreSQL catalog."""
    location = catalog_mod.locate(catalog)
    created = catalog_mod.init(location, backend, metadata, data_path)
    out.print(f"{'created' if created else 'found existing'} {location.backend} catalog at {location.home}")


@app.command("import")
def import_cmd(
    path: Annotated[
        str, typer.Argument(help="A .jsonl(.gz), .json or .parquet file, an HF dataset directory, or a source name.")
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to import into.")],
    column_map: Annotated[
        str, typer.Option("--map", help="Column map, e.g. prompt=question,reference=answer,response=solution,id=id.")
    ],
    task: Annotated[str, typer.Option(help="Task of the prompts: math, code or text.")] = "math",
    split_hint: Annotated[str | None, typer.Option(help="Split hint for every row (e.g. train, test).")] = None,
    policy: Annotated[str, typer.Option(help="Imported traces are teacher or student traces.")] = "teacher",
    model: Annotated[str, typer.Option(help="Model name for traces when the map names none.")] = "imported",
    limit: Annotated[int | None, typer.Option(help="Import only the first N rows.")] = None,
    split: Annotated[str | None, typer.Option(help="Split of an HF DatasetDict directory to read.")] = None,
    max_line_mb: Annotated[float, typer.Option(help="Refuse a JSONL line (or .json file) longer than this.")] = 64.0,
    catalog: CatalogOption = None,
) -> None:
    """Import prompts, or prompts with recorded traces, into a dataset."""
    from tracebank.importer import ColumnMap, ImportConfig, import_data

    cfg = ImportConfig(
        path, dataset, ColumnMap.parse(column_map), task, split_hint, policy, model, limit, split, max_line_mb
    )
    out.print(describe(import_data(catalog_mod.locate(catalog), cfg)))


@app.command("build")
def build_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose prompts to answer.")],
    backend: Annotated[str | None, typer.Option(help="Teacher backend: transformers, openai, vllm or replay.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name, local path or cached hub id.")] = None,
    policy: Annotated[str | None, typer.Option(help="teacher or student: who writes these traces.")] = None,
    samples: Annotated[int | None, typer.Option(help="Traces per prompt.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts (by prompt_id).")] = None,
    split_hint: Annotated[str | None, typer.Option(help="Only prompts with this split hint.")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="default, or axes to vary: ladder,styles,fewshot,paraphrase (comma-separated).")
    ] = None,
    ladder: Annotated[str | None, typer.Option(help="Temperature:top_p steps, e.g. 0.3:1.0,0.9:0.95.")] = None,
    styles: Annotated[str | None, typer.Option(help="System-prompt styles of the styles axis.")] = None,
    shots: Annotated[int | None, typer.Option(help="Worked examples per request (fewshot axis).")] = None,
    temperature: Annotated[float | None, typer.Option()] = None,
    top_p: Annotated[float | None, typer.Option()] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option(help="Requests per local generation batch.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="transformers: the model's dtype, auto (bf16 where the hardware runs it natively), fp32, bf16 or fp16."
        ),
    ] = None,
    max_cost_usd: Annotated[
        float | None, typer.Option(help="Stop sending at this cost; finished work is kept.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Stop sending at this many tokens (prompt + completion).")
    ] = None,
    price_in: Annotated[float | None, typer.Option(help="USD per 1M input tokens (overrides the price table).")] = None,
    price_out: Annotated[float | None, typer.Option(help="USD per 1M output tokens.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: server URL ending in /v1 ($OPENAI_BASE_URL).")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="openai: variable holding the API key.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="openai: requests in flight at most.")] = None,
    rpm: Annotated[float | None, typer.Option(help="openai: requests per minute at most.")] = None,
    tpm: Annotated[float | None, typer.Option(help="openai: tokens per minute at most.")] = None,
    timeout: Annotated[float | None, typer.Option(help="openai: seconds per request.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="openai: retries per request.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="openai: samples per call where the server honours n.")] = None,
    replay_file: Annotated[str | None, typer.Option(help="replay: file of recorded responses.")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Ignore cached responses and sample again.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Send again requests that failed for good before (HTTP 400, ...).")
    ] = False,
    executor: Annotated[
        str | None, typer.Option(help="local, or ray: send from Ray workers sharing the request cache.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="--executor ray: a running Ray cluster (default $RAY_ADDRESS, else a local Ray).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file of build settings (flags override it).")
    ] = None,
    catalog: CatalogOption = None,
) -> None:
    """Sample teacher (or student) traces for a dataset's prompts, cached, resumable and budgeted."""
    flags = {k: v for k, v in locals().items() if k not in ("dataset", "config", "catalog", "refresh", "retry_failed")}
    from tracebank.builders.runner import BuildConfig, build

    backend_flags = {"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency, "rpm": rpm,
                     "tpm": tpm, "timeout_s": timeout, "max_retries": max_retries, "n": n, "path": replay_file,
                     "precision": precision}  # fmt: skip
    for name in ("base_url", "api_key_env", "concurrency", "rpm", "tpm", "timeout", "max_retries", "n", "replay_file",
                 "precision"):  # fmt: skip
        flags.pop(name)
    values = overlay(config, flags)
    options = {**(values.get("options") or {}), **{k: v for k, v in backend_flags.items() if v is not None}}
    values["options"] = options or None
    for name, given in (("refresh", refresh), ("retry_failed", retry_failed)):
        values[name] = given or values.get(name, False)
    cfg = make(BuildConfig, {**values, "dataset": dataset}, "build")
    out.print(describe(build(catalog_mod.locate(catalog), cfg)))


def parse_filter_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``FILTER.KEY=VALUE`` items as {filter: {key: value}}; values are read as YAML (numbers, lists)."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        filter_name, dot, key = name.partition(".")
        if not sep or not dot or not filter_name or not key:
            raise TracebankError(f"--option {item!r}: expected FILTER.KEY=VALUE, e.g. near_dup.threshold=0.8")
        options.setdefault(filter_name, {})[key] = yaml_value("--option", item, value)
    return options


def yaml_value(flag: str, item: str, value: str) -> Any:
    """A flag's value read as YAML (numbers, lists); text that is not YAML is one clear error."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise TracebankError(f"{flag} {item!r}: the value is not valid YAML ({problem}); quote it") from None


@app.command("score")
def score_cmd(
    dataset: Annotated[str, typer.Argument()],
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="Filter to run (repeatable), or a group: safety; default: correctness, exact_dup."
        ),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="A filter setting, FILTER.KEY=VALUE (repeatable).")
    ] = None,
    executor: Annotated[str, typer.Option(help="local, or ray: per-trace filters on Ray Data, same scores.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="--executor ray: a running Ray cluster (default $RAY_ADDRESS, else a local Ray).")
    ] = None,
    catalog: CatalogOption = None,
) -> None:
    """Score every trace of a dataset with filters; store each score with its reason."""
    from tracebank.filters.runner import DEFAULT_FILTERS, ScoreConfig, score

    filter_options = parse_filter_options(option or [])
    cfg = ScoreConfig(dataset, tuple(filters or DEFAULT_FILTERS), filter_options, executor, ray_address)
    result = score(catalog_mod.locate(catalog), cfg)
    table = Table("filter", "traces", "passed", "failed", "not judged", "changed", title=f"scores of {dataset}")
    for s in result.filters:
        table.add_row(s.filter, str(s.traces), str(s.passed), str(s.failed), str(s.unjudged), str(s.changed))
    out.print(table)
    out.print(describe(result))


@app.command()
def curate(
    dataset: Annotated[str, typer.Argument()],
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Policy YAML: ordered SQL rules, quotas, splits.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Release message.")],
    catalog: CatalogOption = None,
) -> None:
    """Decide keep/drop for every trace and commit a release (one DuckLake snapshot)."""
    from tracebank.curate import releases
    from tracebank.curate.policy import Policy

    parsed, text = Policy.load(policy)
    result = releases.curate(catalog_mod.locate(catalog), dataset, parsed, text, message)
    out.print(describe(result))
    table = Table("split", "rule", "decision", "traces", title=f"{dataset}@v{result.version} funnel")
    for c in result.counts:
        table.add_row(c["split"], c["rule"], "keep" if c["keep"] else "drop", str(c["n"]))
    out.print(table)


@app.command()
def versions(dataset: Annotated[str, typer.Argument()], catalog: CatalogOption = None) -> None:
    """List a dataset's releases."""
    from tracebank.curate import releases

    frame = releases.versions(catalog_mod.locate(catalog), dataset)
    if frame.is_empty():
        out.print(f"{dataset} has no releases yet")
        return
    out.print(frame_table(frame, title=f"releases of {dataset}"))


@app.command("diff")
def diff_cmd(
    old: Annotated[str, typer.Argument(help="The earlier release, DATASET@vN.")],
    new: Annotated[str, typer.Argument(help="The later release, DATASET@vM.")],
    catalog: CatalogOption = None,
) -> None:
    """Show rows added and removed per split and rule, and the funnel change, between two releases."""
    from tracebank.curate.diff import diff
    from tracebank.curate.releases import ReleaseRef

    result = diff(catalog_mod.locate(catalog), ReleaseRef.parse(old), ReleaseRef.parse(new))
    a, b = result.a, result.b
    out.print(
        f"{a['dataset']}@v{a['version']} (snapshot {a['snapshot_id']}, policy {a['policy_name']}) -> "
        f"{b['dataset']}@v{b['version']} (snapshot {b['snapshot_id']}, policy {b['policy_name']}): "
        f"{result.added} rows added, {result.removed} removed, {result.moved} traces changed split"
    )
    if result.changes.height:
        out.print(frame_table(result.changes, title="rows added and removed"))
    out.print(frame_table(result.funnel, title="funnel"))


def _write_rows(frame: Any, fmt: str, max_rows: int) -> None:
    rows = frame.to_dicts()
    if fmt == "json":
        sys.stdout.write(orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(frame.columns)
        for row in rows:
            writer.writerow([orjson.dumps(v).decode() if isinstance(v, (list, dict)) else v for v in row.values()])
    else:
        out.print(frame_table(frame, max_rows=max_rows))
        if frame.height > max_rows:
            out.print(f"[dim]{frame.height} rows; showing {max_rows} (--max-rows, or --format csv/json for all)[/]")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over prompts, traces, scores, decisions, releases, runs, curated.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    at: Annotated[int | None, typer.Option("--at", help="Query the catalog as of this snapshot.")] = None,
    release: Annotated[str | None, typer.Option(help="Query the catalog as of a release, DATASET@vN.")] = None,
    max_rows: Annotated[int, typer.Option(help="Rows to show in table format.")] = 100,
    timeout: TimeoutOption = SqlGuard.timeout_s,
    max_result_rows: MaxResultRowsOption = SqlGuard.max_result_rows,
    catalog: CatalogOption = None,
) -> None:
    """Run a read-only SQL query on the catalog (time travel: --at, --release, or AT (VERSION => n)).

    Read-only means it: the query reads the catalog's tables and views and nothing else (no other
    file or URL, no COPY, ATTACH, SET, INSTALL, ...), and stops past --timeout seconds."""
    guard = SqlGuard(timeout_s=timeout, max_result_rows=max_result_rows)
    if fmt not in ("table", "csv", "json"):
        raise TracebankError(f"--format {fmt!r}: choose table, csv or json")
    location = catalog_mod.locate(catalog)
    snapshot = at
    if release is not None:
        from tracebank.curate.releases import ReleaseRef, resolve

        with catalog_mod.Catalog(location) as cat:
            snapshot = resolve(cat, ReleaseRef.parse(release))["snapshot_id"]
    with catalog_mod.Catalog(location, snapshot=snapshot, guard=guard) as cat:
        _write_rows(cat.sql(query), fmt, max_rows)


@app.command()
def card(
    release: Annotated[str, typer.Argument(help="DATASET@vN (or DATASET for the latest release).")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory for <dataset>/v<N>.md (default <catalog>/cards).")
    ] = None,
    license: Annotated[str, typer.Option(help="License for the card header (an HF license id).")] = "other",
    catalog: CatalogOption = None,
) -> None:
    """Render a release's data card (markdown with an HF dataset-card header)."""
    from tracebank.curate.releases import ReleaseRef
    from tracebank.data_cards.render import render_card

    if out_dir is not None:
        catalog_mod.refuse_system_path(out_dir, "--out")
    path = render_card(catalog_mod.locate(catalog), ReleaseRef.parse(release), out_dir, license)
    out.print(f"wrote {path}")


@app.command()
def publish(
    release: Annotated[str, typer.Argument(help="DATASET@vN to publish.")],
    to: Annotated[str, typer.Option("--to", help="A directory, or hf://ORG/NAME to upload to the Hugging Face Hub.")],
    license: Annotated[str, typer.Option(help="License for the card header (an HF license id).")] = "other",
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repository as private.")] = False,
    catalog: CatalogOption = None,
) -> None:
    """Publish a release as an HF-datasets folder (Parquet per split, card, plots) or to the Hub."""
    from tracebank.curate.releases import ReleaseRef
    from tracebank.data_cards.publish import publish as publish_release

    result = publish_release(catalog_mod.locate(catalog), ReleaseRef.parse(release), to, license, private)
    rows = ", ".join(f"{split}: {n}" for split, n in sorted(result.splits.items()))
    out.print(f"published {result.release} to {result.target} ({rows})")


@app.command()
def shell(
    at: Annotated[int | None, typer.Option("--at", help="Open the catalog as of this snapshot.")] = None,
    timeout: TimeoutOption = SqlGuard.timeout_s,
    max_result_rows: MaxResultRowsOption = SqlGuard.max_result_rows,
    catalog: CatalogOption = None,
) -> None:
    """Open an interactive read-only SQL prompt on the catalog (statements end with ';'); reads as `sql` does."""
    from tracebank.cli.shell import run_shell

    guard = SqlGuard(timeout_s=timeout, max_result_rows=max_result_rows)
    run_shell(catalog_mod.locate(catalog), snapshot=at, out=out, guard=guard)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/demo.yaml).")],
    set_vars: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe var: name=value (repeatable).")
    ] = None,
    catalog: CatalogOption = None,
) -> None:
    """Run a whole pipeline from a recipe: import, build, score, curate, card, train."""
    from tracebank.cli.recipes import run_recipe
    from tracebank.cli.summary import print_step, print_summary

    overrides = {}
    for item in set_vars or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise TracebankError(f"--set {item!r}: expected name=value")
        overrides[name] = yaml_value("--set", item, value)
    location = catalog_mod.locate(catalog)
    results = run_recipe(location, recipe, overrides, on_step=lambda n, step, result: print_step(out, n, step, result))
    print_summary(out, location, results)


def main() -> None:
    """Entry point: user errors print one line on stderr and exit 1."""
    try:
        app()
    except TracebankError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished work is saved (request cache and committed snapshots)")
        sys.exit(130)
