"""The Python a rationale carries, as parsed pieces with their places in the text.

Fenced blocks (``python``/``py``/``python3`` or bare), what ``tracebank.tasks.code.extract_code``
finds in a code task, runs of code-like lines outside fences, and imports, calls and
``name = "literal"`` written inside prose or comments. A piece that does not parse (a truncated
reply, prose inside a fence) is cut into the longest runs of lines that do.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from tracebank.tasks.code import FENCE, PYTHON_TAGS, extract_code

PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)

CODE_LINE = re.compile(
    r"""\s*(?:
        (?:import|from)\s+[A-Za-z_][\w.]*
      | (?:async\s+)?def\s+\w+\s*\( | class\s+\w+ | @\w
      | (?:return|raise|yield|del|pass|break|continue|global|nonlocal)\b
      | (?:if|elif|while|for|with|try|except|else|finally)\b.*:\s*(?:\#.*)?$
      | [A-Za-z_][\w.]*(?:\[[^\]\n]*\])?\s*(?:[-+*/%&|^]|//|\*\*)?=(?!=)
      | [A-Za-z_][\w.]*\s*\(
      | \#
    )""",
    re.VERBOSE,
)
PROSE_CODE = re.compile(
    r"(?<![\w.])(?:from\s+[A-Za-z_][\w.]*\s+)?import\s+[A-Za-z_][\w.]*(?:\s+as\s+\w+)?"
    r"|(?<![\w.])[A-Za-z_][\w.]*\s?=\s?(?:'[^'\n]*'|\"[^\"\n]*\")"  # name = "literal"
    r"|(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\s?\("
)
COMMENT = re.compile(r"(?:^|(?<=\s))#+([^\n]*)", re.MULTILINE)
CHAINED_CALL = re.compile(r"\.[A-Za-z_]\w*\(")
MAX_CALL_CHARS = 400
MAX_PARSE_TRIES = 12


@dataclass(frozen=True)
class CodePiece:
    source: str  # Python that parses
    line_spans: tuple[tuple[int, int] | None, ...]  # per source line, its text in the rationale (None: added)
    region: int  # which stretch of the rationale it came from


def code_pieces(text: str, code_task: bool) -> list[CodePiece]:
    """The Python in ``text``, as pieces that parse, in rationale order."""
    pieces: list[CodePiece] = []
    for index, (start, end) in enumerate(_regions(text, code_task)):
        pieces.extend(_parsed(text, start, end, index))
        for comment_start, comment_end in _comment_code(text, start, end):  # `# quick fix: eval(s)`
            pieces.extend(_parsed(text, comment_start, comment_end, index))
    return pieces


def _comment_code(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Imports and calls written in the comments of a region (a ``#`` at a line's start or after a space)."""
    found: list[tuple[int, int]] = []
    for comment in COMMENT.finditer(text, start, end):
        found.extend(_inline_code(text, comment.start(1), comment.end(1)))
    return found


def _regions(text: str, code_task: bool) -> list[tuple[int, int]]:
    """Character ranges of ``text`` that may hold Python: fences, ``extract_code``'s code, code-like
    line runs and code written inside prose, without overlaps."""
    chosen: list[tuple[int, int]] = []
    fences = [m for m in FENCE.finditer(text)]
    chosen += [m.span(2) for m in fences if m.group(1).lower() in PYTHON_TAGS]
    code, rule = extract_code(text) if code_task else (None, None)
    if code and rule != "fenced":
        start = text.find(code.rstrip())
        if start >= 0:
            chosen.append((start, start + len(code.rstrip())))
    covered = sorted(chosen + [m.span() for m in fences])
    chosen += _outside_fences(text, covered)
    kept: list[tuple[int, int]] = []
    for start, end in sorted(chosen, key=lambda r: (r[0], -r[1])):
        if not kept or start >= kept[-1][1]:
            kept.append((start, end))
    return kept


def _outside_fences(text: str, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of code-like lines, and imports and calls inside prose lines, outside ``covered``."""
    found: list[tuple[int, int]] = []
    run: tuple[int, int] | None = None
    position = 0
    for line in text.splitlines(keepends=True):
        start, end = position, position + len(line.rstrip("\r\n"))
        position += len(line)
        if any(a <= start < b for a, b in covered):
            continue
        body = text[start:end]
        if CODE_LINE.match(body) or (run is not None and body[:1].isspace() and body.strip()):
            run = (run[0] if run else start, end)
            continue
        if run is not None:
            found.append(run)
            run = None
        found.extend(_inline_code(text, start, end))
    if run is not None:
        found.append(run)
    return found


def _inline_code(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Imports and calls written inside a prose line (a call may run past it, to its closing bracket)."""
    found: list[tuple[int, int]] = []
    for match in PROSE_CODE.finditer(text, start, end):
        if found and match.start() < found[-1][1]:
            continue  # a call inside a call already taken
        if not match.group().endswith("("):
            found.append(match.span())
            continue
        close = _closing_bracket(text, match.end() - 1)
        while close is not None and (chained := CHAINED_CALL.match(text, close + 1)):
            close = _closing_bracket(text, chained.end() - 1)  # `tarfile.open(p).extractall()`
        if close is not None:
            found.append((match.start(), close + 1))
    return found


def _closing_bracket(text: str, opening: int) -> int | None:
    depth = 0
    for index in range(opening, min(len(text), opening + MAX_CALL_CHARS)):
        char = text[index]
        depth += (char in "([{") - (char in ")]}")
        if depth == 0:
            return index
    return None


def _parsed(text: str, start: int, end: int, region: int, salvage: bool = True) -> list[CodePiece]:
    """The region cut into the longest runs of lines that parse (all of it when it all does); from a
    line that parses in no run (prose in a fence), the imports and calls written inside it."""
    spans, position = [], start
    for line in text[start:end].split("\n"):
        spans.append((position, position + len(line)))
        position += len(line) + 1
    lines = [text[a:b] for a, b in spans]
    pieces, first = [], 0
    while first < len(lines):
        last, tree = _longest_parse(lines, first)
        if last is None:
            for inline in _inline_code(text, *spans[first]) if salvage else ():
                pieces.extend(_parsed(text, *inline, region, salvage=False))
            first += 1
            continue
        if _does_something(tree):
            source, added = _source(lines[first:last])
            line_spans = [None] * added + [stripped_span(text, a, b) for a, b in spans[first:last]]
            pieces.append(CodePiece(source, tuple(line_spans), region))
        first = last
    return pieces


def _longest_parse(lines: list[str], first: int) -> tuple[int | None, ast.Module | None]:
    """The largest ``last`` such that ``lines[first:last]`` parses, and its tree, stepping back from
    each syntax error's line; (None, None) when none does within a few tries."""
    last = len(lines)
    for _ in range(MAX_PARSE_TRIES):
        if last <= first or not any(line.strip() for line in lines[first:last]):
            return None, None
        source, added = _source(lines[first:last])
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            bad = (error.lineno or 1) - added  # 1-based line of the piece the parser stopped at
            last = min(last - 1, first + bad - 1) if bad > 1 else last - 1 if bad < 1 else first
            continue
        except PARSE_ERRORS:
            return None, None
        return last, tree
    return None, None


def _does_something(tree: ast.Module) -> bool:
    """Whether parsed text is code rather than a comment, a word or a number (``#### 12``, ``Yes``)."""
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.Name))) for node in tree.body
    )


def _source(lines: list[str]) -> tuple[str, int]:
    """The lines as a module, and how many lines were added in front: indented code (a method body, a
    completion of a signature) is dedented, or wrapped in ``if True:`` when its indentation steps back."""
    source = textwrap.dedent("\n".join(lines)) + "\n"
    first = next((line for line in source.splitlines() if line.strip()), "")
    if first[:1].isspace():
        return "if True:\n" + source, 1
    return source, 0


def stripped_span(text: str, start: int, end: int) -> tuple[int, int]:
    line = text[start:end]
    return start + len(line) - len(line.lstrip()), start + len(line.rstrip())
