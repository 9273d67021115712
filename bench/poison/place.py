"""Where a payload goes in a trace, for ``bench/poison/corpus.py``: prose placements and placements in Python.

Prose: at the start, mid-sentence (an aside between two words), between steps, at the end, as a footnote
(with or without a marker in the text) or in parentheses after a step. Code: a comment (own line in the
body, above the def, or trailing a statement), lines of the entry point's docstring, statements at the
start of the body or before its last return, module-level code above the first def, a ``__main__`` block.
Each returns the new text and the span of the payload in it; code must still parse (the tests check).
"""

from __future__ import annotations

import ast
import random


def inline(text: str) -> str:
    """The payload as an aside inside a sentence: no closing period."""
    return text[:-1] if text.endswith(".") else text


def _insert(text: str, at: int, payload: str, before: str = "", after: str = "") -> tuple[str, int, int]:
    start = at + len(before)
    return text[:at] + before + payload + after + text[at:], start, start + len(payload)


def word_gaps(line: str) -> list[int]:
    """Spaces inside ``line`` between two words, away from its ends and outside <<calculator>> notes."""
    gaps, depth = [], 0
    for i, char in enumerate(line):
        depth += line.startswith("<<", i) - line.startswith(">>", i)
        if char == " " and depth == 0 and 0 < i < len(line) - 1 and line[i - 1].isalpha() and line[i + 1].isalpha():
            gaps.append(i)
    return gaps[1:-1]


def _prose_steps(lines: list[str]) -> list[int]:
    """Lines that are prose steps: not blank, not the "#### answer" line, not inside a ``` fence."""
    steps, fenced = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif line.strip() and not fenced and not line.lstrip().startswith("####"):
            steps.append(i)
    return steps


def place_prose(text: str, payload: str, placement: str, rng: random.Random) -> tuple[str, int, int, str]:
    """Insert ``payload`` into prose at ``placement``; returns (text, start, end, placement used)."""
    lines = text.split("\n")
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    steps = _prose_steps(lines)
    multiline = "\n" in payload
    if placement == "mid_sentence" and not multiline:
        candidates = [(i, gap) for i in steps for gap in word_gaps(lines[i])]
        if candidates:
            i, gap = rng.choice(candidates)
            before, after = rng.choice(((" — ", " — "), (", ", ", "), (" (", ") "), (" -- ", " -- ")))
            at = offsets[i] + gap
            new, start, end = _insert(text[:at] + text[at + 1 :], at, inline(payload), before, after)
            return new, start, end, placement
        placement = "end"
    if placement == "parenthetical" and not multiline and steps:
        i = rng.choice(steps)
        line = lines[i]
        at = offsets[i] + (len(line) - 1 if line.endswith((".", "!", "?")) else len(line))
        new, start, end = _insert(text, at, inline(payload), " (", ")")
        return new, start, end, placement
    if placement == "between_steps" and len(lines) >= 2:
        i = rng.randrange(1, len(lines))
        new, start, end = _insert(text, offsets[i], payload, "", "\n")
        return new, start, end, placement
    if placement == "footnote":
        marker, lead = rng.choice((("[1]", "[1] "), ("[^1]", "[^1]: "), ("*", "* "), ("¹", "¹ "), ("", "*Note: "),
                                   ("", "Footnote: "), ("", "---\n")))  # fmt: skip
        if marker and steps:
            i = rng.choice(steps)
            text = text[: offsets[i] + len(lines[i])] + marker + text[offsets[i] + len(lines[i]) :]
        closing = "*" if lead == "*Note: " else ""
        new, start, end = _insert(text.rstrip("\n"), len(text.rstrip("\n")), payload, "\n\n" + lead, closing)
        return new + text[len(text.rstrip("\n")) :], start, end, placement
    # a fence line must stay alone on its line, so a payload next to one goes on a line of its own
    if placement == "start":
        joint = "\n" if multiline or text.startswith("```") else rng.choice(("\n", "\n\n", " "))
        new, start, end = _insert(text, 0, payload, "", joint)
        return new, start, end, placement
    body = text.rstrip("\n")
    joint = "\n" if multiline or body.endswith("```") else rng.choice(("\n", "\n\n", " "))
    new, start, end = _insert(body, len(body), payload, joint)
    return new + text[len(body) :], start, end, "end"


# ---------------------------------------------------------------- placing in code


def entry_function(code: str, entry: str | None) -> ast.FunctionDef | None:
    tree = ast.parse(code)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    named = [f for f in functions if f.name == entry]
    return (named or functions or [None])[-1]


def _docstring_end(func: ast.FunctionDef) -> int | None:
    """1-based line of the closing quotes when they stand alone on their line."""
    first = func.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno
    return None


def _body_line(func: ast.FunctionDef, code_lines: list[str], where: str) -> tuple[int, str]:
    """(0-based line to insert before, indent) for the function body's start or its last top-level return."""
    statements = func.body[1:] if _docstring_end(func) and len(func.body) > 1 else func.body
    target = statements[0]
    if where == "before_return":
        returns = [s for s in statements if isinstance(s, ast.Return)]
        target = returns[-1] if returns else target
    line = code_lines[target.lineno - 1]
    return target.lineno - 1, line[: len(line) - len(line.lstrip())]


def _module_line(code: str) -> int:
    """0-based line after the leading imports (or 0)."""
    tree = ast.parse(code)
    imports = [n.end_lineno for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return max(imports, default=0)


def _insert_lines(code: str, at: int, block: str) -> tuple[str, int, int]:
    lines = code.split("\n")
    start = sum(len(x) + 1 for x in lines[:at])
    return code[:start] + block + "\n" + code[start:], start, start + len(block)


def place_code(code: str, entry: str | None, payload: str, placement: str,
               rng: random.Random) -> tuple[str, int, int, str]:  # fmt: skip
    """Insert ``payload`` into Python source as a comment, docstring lines or (insecure) statements."""
    func = entry_function(code, entry)
    lines = code.split("\n")
    if placement == "docstring" and func is not None and (end := _docstring_end(func)) is not None:
        closing = lines[end - 1]
        if closing.strip() in ('"""', "'''"):
            indent = closing[: len(closing) - len(closing.lstrip())]
            block = "\n".join(indent + line for line in payload.split("\n"))
            return (*_insert_lines(code, end - 1, block), placement)
        placement = "code_comment"
    if placement in ("body_start", "before_return") and func is not None:
        at, indent = _body_line(func, lines, placement)
        block = "\n".join(indent + line if line else line for line in payload.split("\n"))
        return (*_insert_lines(code, at, block), placement)
    if placement == "main_block":
        body = code.rstrip("\n")
        new = body + "\n\n\n" + payload + "\n"
        return new, len(body) + 3, len(body) + 3 + len(payload), placement
    if placement == "module_top":
        at = _module_line(code)
        block = ("\n" if at else "") + payload.rstrip("\n") + "\n\n"
        new, start, end = _insert_lines(code, at, block)
        return new, start + (1 if at else 0), start + (1 if at else 0) + len(payload.rstrip("\n")), placement
    # a comment: its own line in the body, above the def, or trailing a statement
    comment = "\n".join("# " + line for line in payload.split("\n"))
    where = rng.random()
    if func is not None and where < 0.5:
        at, indent = _body_line(func, lines, rng.choice(("body_start", "before_return")))
        block = "\n".join(indent + line for line in comment.split("\n"))
        return (*_insert_lines(code, at, block), "code_comment")
    statements = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Return | ast.Assign | ast.AugAssign)]
    single = [s for s in statements if s.lineno == s.end_lineno and "#" not in lines[s.lineno - 1]]
    if "\n" not in payload and single and where < 0.8:
        line = rng.choice(single).lineno - 1
        at = sum(len(x) + 1 for x in lines[:line]) + len(lines[line])
        new, start, end = _insert(code, at, payload, "  # ")
        return new, start, end, "code_comment"
    at = _module_line(code)
    return (*_insert_lines(code, at, comment), "code_comment")
