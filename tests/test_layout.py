"""The layout keeps its shape: each room imports only the rooms its ``__init__.py`` says it may, every
package says what it holds, and no module grows past what a reader takes in at once."""

import ast
import re

import pytest

from tests import ROOMS, ROOT, module_imports

DOORS = {("tracebank/__main__.py", "cli")}  # `python -m tracebank` is the command
MAX_LINES = 420


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tracebank":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "tracebank"


def may_import(room: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((ROOT / room / "__init__.py").read_text())) or ""
    found = re.search(r"^May import: (.*)$", doc, flags=re.MULTILINE)
    assert found, f"{room}/__init__.py's docstring has no 'May import:' line"
    line = found.group(1).split("(")[0].rstrip(". ")
    return {name.strip() for name in line.split(",") if name.strip() in ROOMS}


def test_the_rule_reads_each_rooms_docstring():
    assert may_import("tracebank") == set()
    assert may_import("curate") == {"filters", "tracebank"}
    assert may_import("cli") == set(ROOMS) - {"cli"}


@pytest.mark.parametrize("room", list(ROOMS))
def test_each_room_imports_only_the_rooms_below_it(room):
    allowed = may_import(room) | {room}
    wrong = []
    for path in sorted((ROOT / room).rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for line, module in module_imports(path):
            target = room_of(module)
            if target and target not in allowed and (where, target) not in DOORS:
                wrong.append(f"{where}:{line} imports {module}")
    assert not wrong, f"{room}/ may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_the_rooms_form_no_cycle():
    """Each room's allowed set excludes every room that may import it: the floors stack one way."""
    for room in ROOMS:
        for below in may_import(room):
            assert room not in may_import(below), f"{room} and {below} may import each other"


def test_every_package_says_what_it_holds():
    bare = [str(init.relative_to(ROOT)) for room in ROOMS for init in (ROOT / room).rglob("__init__.py")
            if not ast.get_docstring(ast.parse(init.read_text()))]  # fmt: skip
    assert not bare, f"packages without a docstring: {bare}"


def test_no_module_is_longer_than_a_reader_takes_in():
    long = [f"{path.relative_to(ROOT)} ({n} lines)" for room in ROOMS for path in (ROOT / room).rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES]  # fmt: skip
    assert not long, f"split these by what they do: {long}"


def test_the_packages_pyproject_installs_are_the_rooms():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for folder, name in ROOMS.items():
        assert f'"{name}" = "{folder}"' in pyproject, f"pyproject.toml does not install {folder}/ as {name}"
    for init in (ROOT / "filters").glob("*/__init__.py"):
        assert f'"tracebank.filters.{init.parent.name}"' in pyproject, f"{init.parent} is not in packages"
