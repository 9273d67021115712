"""tracebank's tests: one folder per room of the package (filters/<family>/, curate/, loop/, cli/, bench/ ...)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout: recipes/, bench/, README.md; ../shared beside it
# folder -> the name it installs as (pyproject.toml's package-dir); tracebank/ is the ground floor
ROOMS = {"tracebank": "tracebank", **{d: f"tracebank.{d}" for d in
         ("builders", "filters", "curate", "train", "loop", "data_cards", "cli")}}  # fmt: skip


def module_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in a file; ``from a import b`` gives ``a`` and ``a.b``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found
