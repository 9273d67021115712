"""mkdocs hooks: the reference pages are generated from the code at build time, so they cannot drift.

- ``reference/filters.md``: every registered filter (``tracebank.filters.runner.FILTERS``) with what it
  measures (its docstring), the columns it reads, its version, its options (type, default and the
  comment beside each field), and what ``bench/filter_cost.py`` measured for it (metrics, reasons,
  seconds per 1k traces) from ``docs/reference/filter_costs.json``.
- ``reference/policies.md``: the fields of a policy, a rule and a selection, and the shipped policies.
- ``reference/cli.md``: every ``tracebank`` command from the typer app: usage, arguments, options.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import re
import shutil
import tempfile
import textwrap
import tokenize
from pathlib import Path

import typer
import yaml
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
COSTS = Path(__file__).resolve().parent / "reference" / "filter_costs.json"


_TREE: Path | None = None  # the tree of links on_config made
ROOMS = ("builders", "filters", "curate", "train", "loop", "data_cards", "cli")


@event_priority(100)  # before mkdocstrings makes its handler from these settings
def on_config(config):
    """Show mkdocstrings the package as it installs: ``tracebank/`` with each room inside it.

    The rooms sit beside ``tracebank/`` in the checkout and install as ``tracebank.<room>``
    (pyproject's package-dir), which griffe's static finder cannot follow; a tree of links in a
    temporary directory puts them where the import system finds them.
    """
    global _TREE
    _TREE = Path(tempfile.mkdtemp(prefix="tracebank-docs-"))
    tree = _TREE / "tracebank"
    tree.mkdir()
    for entry in (ROOT / "tracebank").iterdir():
        (tree / entry.name).symlink_to(entry)
    for room in ROOMS:
        (tree / room).symlink_to(ROOT / room)
    config.plugins["mkdocstrings"].config["handlers"]["python"]["paths"] = [str(tree.parent)]
    return config


def on_shutdown():
    if _TREE is not None:
        shutil.rmtree(_TREE, ignore_errors=True)


def on_files(files, config):
    pages = {"reference/filters.md": filter_reference, "reference/policies.md": policy_reference,
             "reference/cli.md": cli_reference}  # fmt: skip
    for path, make in pages.items():
        files.append(File.generated(config, path, content=make()))
    return files


def cell(text: object) -> str:
    """Text for a Markdown table cell: one line, pipes and angle brackets escaped."""
    return escape(" ".join(str(text).split())).replace("|", "\\|")


def escape(text: str) -> str:
    """Help text as Markdown shows it: ``<catalog>`` is a placeholder, not an HTML tag."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def field_comments(cls: type) -> dict[str, str]:
    """The ``# comment`` beside each field of a dataclass, from its source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            line = lines[token.start[0] - 1]
            found = re.match(r"\s*(\w+)\s*:", line)
            if found and token.start[1] > 0:
                comments[found.group(1)] = token.string.lstrip("# ").strip()
    return comments


def default_of(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "required"


def fields_table(cls: type) -> str:
    comments = field_comments(cls)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(cls):
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        kind = kind.replace(" | ", " or ")  # a pipe would end the table cell, even in a code span
        rows.append(
            f"| `{field.name}` | `{cell(kind)}` | `{cell(default_of(field))}` | {cell(comments.get(field.name, ''))} |"
        )
    return "\n".join(rows)


def docstring(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def family(cls: type) -> str:
    parts = cls.__module__.split(".")
    return parts[2] if len(parts) > 3 else "core"


def filter_reference() -> str:
    from tracebank.filters.runner import DEFAULT_FILTERS, FILTERS
    from tracebank.filters.safety.safety import FILTER_GROUPS

    costs = json.loads(COSTS.read_text()) if COSTS.exists() else {"filters": {}}
    measured = costs.get("filters", {})
    out = [
        "# Filter reference",
        "",
        "Generated from the code (`tracebank.filters.runner.FILTERS`) each time the docs are built. Every",
        "filter scores every trace and drops nothing: it stores metrics, `passed` and a reason per trace,",
        "and the [policy](policies.md) decides. `tracebank score DATASET --filter NAME` runs one (repeatable;",
        f"default: {', '.join(f'`{n}`' for n in DEFAULT_FILTERS)}); options go as `--option NAME.KEY=VALUE`.",
        "",
        "Groups: "
        + "; ".join(f"`{g}` = {', '.join(f'`{m}`' for m in members)}" for g, members in FILTER_GROUPS.items())
        + ".",
        "",
    ]
    if measured:
        out += [
            f"Cost and metrics were measured by `{costs['command']}` on {costs['date']} ({costs['machine']};"
            f" `uptime` load {costs['load']}): {cell(costs['data'])}. Each column is the wall time of",
            "`tracebank score` with that filter alone, in its own process (Python, model loads, reading its input",
            "and committing its scores included; caches off). *s per 1k* is the difference of the two runs scaled",
            "to 1,000 traces (0.0 where the two differ by less than the run-to-run noise of a second or two);",
            "*once* is the rest, what a run costs whatever its size.",
            "",
            "| filter | family | small run (s) | large run (s) | s per 1k | once (s) | metrics |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, cls in FILTERS.items():
            m = measured.get(name)
            if not m:
                out.append(f"| [`{name}`](#{name}) | {family(cls)} | not measured | | | | |")
                continue
            numbers = " | ".join(
                f"{m[k]:.1f}" for k in ("small_seconds", "large_seconds", "seconds_per_1k", "load_seconds")
            )
            metrics = ", ".join(f"`{x}`" for x in m["metrics"])
            out.append(f"| [`{name}`](#{name}) | {family(cls)} | {numbers} | {metrics} |")
        out.append("")
    for name, cls in FILTERS.items():
        module = inspect.getmodule(cls)
        about = docstring(cls) or docstring(module)
        out += [
            f"## {name}",
            "",
            f"`{cls.__module__}.{cls.__name__}` · family **{family(cls)}** · version `{cls.version}`",
            "",
        ]
        out += [about, "", f"Reads: {', '.join(f'`{c}`' for c in cls.reads)}.", ""]
        options = getattr(cls, "Options", None)
        if options is not None:
            out += ["Options:", "", fields_table(options), ""]
        else:
            out += ["No options.", ""]
        m = measured.get(name)
        if m:
            out += [
                f"Measured ({m['traces']} traces in the large run): {m['seconds_per_1k']:.1f} s per 1k traces,"
                f" {m['load_seconds']:.1f} s once per run.",
                "",
            ]
            out += ["Metrics: " + ", ".join(f"`{x}`" for x in m["metrics"]) + ".", ""]
            out += ["Reasons seen: " + ", ".join(f"`{x}`" for x in m["reasons"]) + ".", ""]
    return "\n".join(out)


def policy_reference() -> str:
    from tracebank.curate import policy as policy_mod
    from tracebank.curate.select import Select

    out = ["# Policy reference", "", "Generated from `tracebank.curate.policy` each time the docs are built.", ""]
    out += [
        docstring(policy_mod).replace("::\n", ":\n\n```yaml").replace("\n\nPredicates", "\n```\n\nPredicates", 1),
        "",
    ]
    for cls, what in ((policy_mod.Policy, "A policy"), (policy_mod.Rule, "A rule"), (Select, "`select:`")):
        out += [f"## {cls.__name__}", "", f"{what}: `{cls.__module__}.{cls.__name__}`.", "", docstring(cls), ""]
        out += [fields_table(cls), ""]
    out += ["## Shipped policies", "", "In `recipes/policies/` of the checkout; copy one and edit it.", ""]
    for path in sorted((ROOT / "recipes" / "policies").glob("*.yaml")):
        text = path.read_text()
        rules = yaml.safe_load(text).get("rules", [])
        out += [f"### {path.stem}", "", f"{len(rules)} rules.", "", "```yaml", text.rstrip(), "```", ""]
    return "\n".join(out)


def cli_reference() -> str:
    from tracebank.cli.main import app

    root = typer.main.get_command(app)
    out = ["# CLI reference", "", "Generated from the typer app (`tracebank.cli.main.app`) each time the docs are built;",
           "`tracebank COMMAND --help` prints the same.", ""]  # fmt: skip

    def walk(command, path: list[str]) -> None:  # typer's own (vendored) click commands
        if hasattr(command, "commands"):
            for name in sorted(command.commands):
                walk(command.commands[name], [*path, name])
            return
        ctx = command.context_class(command, info_name=" ".join(path))
        usage = " ".join(command.collect_usage_pieces(ctx))
        out.extend([f"## {' '.join(path[1:])}", "", f"```\n{' '.join(path)} {usage}\n```", ""])
        out.extend([escape(inspect.cleandoc(command.help or "")), ""])
        rows = []
        for param in command.params:
            if param.name == "help":
                continue
            if param.param_type_name == "argument":
                names, help_text = f"`{(param.metavar or param.name).upper()}`", getattr(param, "help", "") or ""
            else:
                names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
                help_text = param.help or ""
            default = "" if param.required or param.default in (None, False, ()) else f"`{cell(param.default)}`"
            env = f" (env `{param.envvar}`)" if getattr(param, "envvar", None) else ""
            rows.append(f"| {names} | {cell(help_text)}{env} | {'yes' if param.required else ''} | {default} |")
        if rows:
            out.extend(["| argument or option | meaning | required | default |", "|---|---|---|---|", *rows, ""])

    walk(root, ["tracebank"])
    return "\n".join(out)
