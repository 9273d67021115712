"""The shell blocks of the README and the docs site, for the tests that run them as written.

A ```bash block is run by a test in one of two ways: it sits on a page of the mkdocs nav's
"Walkthrough" section (``tests/test_docs.py`` runs every ``tracebank`` line of those pages, in nav
order), or the HTML comment just above it names the test that runs it (``<!-- run: FILE::TEST -->``).
A block no test can run offline says why instead (``<!-- not run: REASON -->``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests import ROOT

DOCS = ROOT / "docs"
BLOCK = re.compile(r"(?:<!--(?P<marker>[^>]*?)-->[ \t]*\n)?```bash\n(?P<body>.*?)```", flags=re.DOTALL)


@dataclass(frozen=True)
class Block:
    page: Path
    marker: str  # the comment just above the block ("run: tests/x.py::test_y", "not run: why"), or ""
    body: str

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.body.splitlines() if line.strip()]


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    return [Block(page, (m.group("marker") or "").strip(), m.group("body")) for m in BLOCK.finditer(page.read_text())]


def walkthrough_pages() -> list[Path]:
    """The pages of mkdocs.yml's "Walkthrough" nav section, in order."""
    for entry in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]:
        if isinstance(entry, dict) and "Walkthrough" in entry:
            return [DOCS / (next(iter(p.values())) if isinstance(p, dict) else p) for p in entry["Walkthrough"]]
    raise AssertionError("mkdocs.yml has no Walkthrough section in its nav")


def run_by(test_id: str) -> list[Block]:
    """The blocks whose marker names ``test_id`` (``tests/FILE.py::TEST``), over every page."""
    return [block for page in pages() for block in blocks(page) if block.marker == f"run: {test_id}"]
