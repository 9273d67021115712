"""``tracebank import``: prompts, or prompts with recorded traces, from files into the catalog.

A column map names the source fields: ``prompt=question,reference=answer,response=solution,id=id``.
Paths may be dotted (``meta.question``); ``response=*.solution`` reads every top-level object that
has a ``solution`` field as one trace, with the object's key as the trace's model (wide files such
as GSM8K's labeled model solutions). ``reference=prompt+test+entry_point`` joins several columns
into one JSON object (a code task's tests). Fields the map does not name are kept as JSON in
``meta``: on the trace when rows carry one response, else on the prompt. The path may also name
a source (``humaneval``, ``gsm8k/test``; see ``tracebank.sources``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tracebank import catalog as catalog_mod
from tracebank import hashing, provenance, records, sources
from tracebank.config import parse_map_items
from tracebank.errors import TracebankError, check_at_least
from tracebank.readers import DEFAULT_MAX_LINE_MB, MISSING, as_text, field_value, read_rows
from tracebank.tasks import get_task

DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
POLICIES = ("teacher", "student")


@dataclass(frozen=True)
class ColumnMap:
    """Which source field fills each tracebank column. Only ``prompt`` is required."""

    prompt: str
    reference: str | None = None  # may join columns, "a+b": a JSON object {"a": ..., "b": ...}
    response: str | None = None  # may be "*.field": one trace per top-level object with that field
    id: str | None = None  # the row's own id, kept as source_id (default: its row number)
    system: str | None = None  # a system message to put before the prompt
    model: str | None = None  # the model that wrote the response
    split: str | None = None  # a split name per row, kept as split_hint

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TracebankError(f"--map {field.name}= needs a column name")
            if value is not None and "*" in value and (field.name != "response" or not value.startswith("*.")):
                raise TracebankError(f"--map {field.name}={value}: only response may use a wildcard, as '*.field'")

    @classmethod
    def parse(cls, spec: str | Mapping[str, str]) -> ColumnMap:
        """From ``"prompt=question,reference=answer"`` or a mapping of the same."""
        if isinstance(spec, str):
            pairs = [item.split("=", 1) for item in spec.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise TracebankError(f"--map {spec!r}: expected comma-separated key=column pairs")
            items = [(key.strip(), value.strip()) for key, value in pairs]
        else:
            items = list(spec.items())
        mapping = parse_map_items(items, [f.name for f in fields(cls)])
        if "prompt" not in mapping:
            raise TracebankError("--map must name the prompt column, e.g. --map prompt=question")
        return cls(**mapping)

    def columns(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ImportConfig:
    path: str
    dataset: str
    column_map: ColumnMap
    task: str = "math"
    split_hint: str | None = None  # applies to every row (overrides the map's split column)
    policy: str = "teacher"  # imported traces are teacher or student traces
    model: str = "imported"  # model name when the map names none
    limit: int | None = None  # import only the first N rows
    split: str | None = None  # which split of an HF DatasetDict directory to read
    max_line_mb: float = DEFAULT_MAX_LINE_MB  # a longer JSONL line (or .json file) is an error, read no further

    def __post_init__(self) -> None:
        if not DATASET_NAME.match(self.dataset):
            raise TracebankError(f"dataset name {self.dataset!r}: use letters, digits, '.', '_' or '-'")
        get_task(self.task)
        if self.policy not in POLICIES:
            raise TracebankError(f"policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        check_at_least(self, 1, "limit")
        if not self.max_line_mb > 0:
            raise TracebankError(f"max_line_mb must be positive, got {self.max_line_mb}")


@dataclass(frozen=True)
class ImportResult:
    dataset: str
    rows: int
    prompts_new: int
    prompts_existing: int
    traces_new: int
    traces_existing: int
    snapshot: int | None  # None when nothing new was written
    run_id: str


def _json(values: Mapping[str, Any]) -> str | None:
    return orjson.dumps(dict(values), default=str).decode() if values else None


def _messages(prompt: Any, system: str | None, where: str) -> list[dict[str, str]]:
    """A prompt field is either text or a list of chat messages."""
    if isinstance(prompt, list) and all(isinstance(m, Mapping) and {"role", "content"} <= set(m) for m in prompt):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    elif isinstance(prompt, str) and prompt.strip():
        messages = [{"role": "user", "content": prompt}]
    else:
        raise TracebankError(f"{where}: the prompt is empty or not text")
    if not any(m["role"] == "user" for m in messages):
        raise TracebankError(f"{where}: the prompt has no user message")
    return ([{"role": "system", "content": system}] if system else []) + messages


def _check_columns(row: Mapping[str, Any], column_map: ColumnMap, where: str) -> None:
    """Every mapped column must exist in the first row; a wildcard must match something."""
    for key, path in column_map.columns().items():
        if path.startswith("*."):
            if not _wildcard(row, path[2:]):
                raise TracebankError(f"{where}: --map {key}={path} matches no column; columns: {', '.join(row)}")
            continue
        for part in path.split("+") if key == "reference" else [path]:
            if field_value(row, part) is MISSING:
                raise TracebankError(
                    f"{where}: unknown column {part!r} in --map {key}={path}; columns: {', '.join(row)}"
                )


def _reference(row: Mapping[str, Any], path: str) -> str | None:
    """The reference column, or several joined into a JSON object ("prompt+test+entry_point").

    A null, empty or blank reference is none (NULL): no verifier may judge against it (a code
    reference with empty tests would pass any program).
    """
    if "+" not in path:
        return _blank_is_none(as_text(field_value(row, path)))
    values = {part: field_value(row, part) for part in path.split("+")}
    values = {k: None if v is MISSING or (isinstance(v, str) and not v.strip()) else v for k, v in values.items()}
    return orjson.dumps(values, default=str).decode() if any(v is not None for v in values.values()) else None


def _blank_is_none(text: str | None) -> str | None:
    return text if text is not None and text.strip() else None


def _wildcard(row: Mapping[str, Any], field: str) -> list[str]:
    return [key for key, value in row.items() if isinstance(value, Mapping) and field in value]


def _responses(row: Mapping[str, Any], cfg: ImportConfig) -> tuple[list[tuple[str, str, str | None]], set[str]]:
    """(model, text, meta JSON) per response in the row, and the top-level keys they consumed."""
    path = cfg.column_map.response
    if path is None:
        return [], set()
    if path.startswith("*."):
        field = path[2:]
        keys = _wildcard(row, field)
        found = [
            (key, as_text(row[key][field]), _json({k: v for k, v in row[key].items() if k != field})) for key in keys
        ]
        return [(model, text, meta) for model, text, meta in found if text is not None], set(keys)
    text = as_text(field_value(row, path))
    model = as_text(field_value(row, cfg.column_map.model)) if cfg.column_map.model else None
    return ([(model or cfg.model, text, None)] if text is not None else []), {path.split(".")[0]}


def convert(
    rows: Iterable[tuple[int, dict[str, Any], str | None]], cfg: ImportConfig, run_id: str
) -> tuple[pa.Table, pa.Table, int]:
    """Prompt and trace tables (deduplicated by id) from source rows; all validation happens here."""
    task, now, cmap = get_task(cfg.task), records.now(), cfg.column_map
    prompts: dict[str, dict[str, Any]] = {}
    traces: dict[str, dict[str, Any]] = {}
    count = 0
    mapped = [part for path in cmap.columns().values() if not path.startswith("*.") for part in path.split("+")]
    mapped_tops = {path.split(".")[0] for path in mapped}
    for number, row, split in rows:
        where = f"{cfg.path}:{number}"
        if count == 0:
            _check_columns(row, cmap, where)
        if cfg.limit is not None and count >= cfg.limit:
            break
        count += 1
        prompt = field_value(row, cmap.prompt)
        if prompt is MISSING:
            raise TracebankError(f"{where}: row has no {cmap.prompt!r} column")
        messages = _messages(prompt, as_text(field_value(row, cmap.system)) if cmap.system else None, where)
        pid = hashing.prompt_id(cfg.dataset, messages)
        source_id = as_text(field_value(row, cmap.id)) if cmap.id else str(number)
        responses, consumed = _responses(row, cfg)
        leftover = {k: v for k, v in row.items() if k not in mapped_tops and k not in consumed}
        single = cmap.response is not None and not cmap.response.startswith("*.")
        prompts.setdefault(pid, {
            "prompt_id": pid, "dataset": cfg.dataset, "task": cfg.task, "messages": messages,
            "split_hint": cfg.split_hint or (as_text(field_value(row, cmap.split)) if cmap.split else None) or split,
            "reference": _reference(row, cmap.reference) if cmap.reference else None,
            "source": cfg.path, "source_id": source_id or str(number),
            "meta": None if single else _json(leftover), "imported_at": now, "origin": None, "parents": None,
        })  # fmt: skip
        for sample_idx, (model, text, meta) in enumerate(responses):
            trace_id = hashing.digest("import", pid, model, source_id, text)
            traces.setdefault(trace_id, {
                "trace_id": trace_id, "prompt_id": pid, "dataset": cfg.dataset, "policy": cfg.policy,
                "model": model, "backend": "import", "strategy": "imported", "sample_idx": sample_idx,
                "params": None, "request_key": None, "rationale": text, "answer": task.parse(text),
                "finish_reason": "stop", "prompt_tokens": None, "completion_tokens": None, "cost_usd": None,
                "latency_s": None, "build_run": run_id, "source_id": source_id,
                "meta": _json(leftover) if single else meta, "created_at": now,
                "round": None, "hinted": None, "lineage": None,
            })  # fmt: skip
    if count == 0:
        raise TracebankError(f"{cfg.path}: no rows to import")
    return records.to_table(prompts.values(), records.PROMPTS), records.to_table(traces.values(), records.TRACES), count


def new_rows(writer: catalog_mod.Writer, table: pa.Table, name: str, key: str, dataset: str) -> pa.Table:
    """The rows whose id is not stored yet. Ids are global: one another dataset holds is refused, so an
    import can never touch (or shadow) another dataset's rows."""
    writer.con.register("_incoming_ids", table.select([key]))
    try:
        held = writer.arrow(f"SELECT {key}, dataset FROM {name} WHERE {key} IN (SELECT {key} FROM _incoming_ids)")
    finally:
        writer.con.unregister("_incoming_ids")
    theirs = held.filter(pc.not_equal(held.column("dataset"), dataset))
    if theirs.num_rows:
        first = theirs.slice(0, 1).to_pylist()[0]
        raise TracebankError(
            f"{theirs.num_rows} of these {name} ids already belong to another dataset ({first['dataset']!r} holds "
            f"{key} {first[key]}): nothing was imported into {dataset!r}"
        )
    return table.filter(pc.invert(pc.is_in(table.column(key), value_set=held.column(key))))


def import_data(location: catalog_mod.CatalogLocation, cfg: ImportConfig) -> ImportResult:
    """Import prompts (and traces, when the map names a response) in one catalog commit."""
    started, run_id = records.now(), provenance.new_run_id("import")
    cfg = replace(cfg, path=str(sources.locate(cfg.path).absolute()))  # provenance: where exactly it came from
    rows = read_rows(cfg.path, cfg.split, int(cfg.max_line_mb * 2**20))
    prompts, traces, count = convert(rows, cfg, run_id)
    message = f"import {Path(cfg.path).name} into {cfg.dataset}"
    with catalog_mod.writing(location, message, {"stage": "import", "run_id": run_id}) as writer:
        new_prompts = new_rows(writer, prompts, "prompts", "prompt_id", cfg.dataset)
        new_traces = new_rows(writer, traces, "traces", "trace_id", cfg.dataset)
        counters = {
            "rows": count,
            "prompts_new": new_prompts.num_rows,
            "prompts_existing": prompts.num_rows - new_prompts.num_rows,
            "traces_new": new_traces.num_rows,
            "traces_existing": traces.num_rows - new_traces.num_rows,
        }
        if new_prompts.num_rows or new_traces.num_rows:
            writer.insert("prompts", new_prompts)
            writer.insert("traces", new_traces)
            config = {**asdict(cfg), "column_map": cfg.column_map.columns()}
            writer.insert("runs", provenance.run_row(run_id, "import", cfg.dataset, started, config, counters))
    return ImportResult(cfg.dataset, snapshot=writer.snapshot, run_id=run_id, **counters)
