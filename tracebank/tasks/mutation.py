"""Point mutations of Python code: does a checker (and its tests) tell a near-miss from a solution?

Each mutant changes exactly one thing in the code: a comparison (``<`` to ``>=``), an arithmetic
or augmented-assignment operator (``+`` to ``-``), a boolean operator (``and`` to ``or``), a ``not``
removed, an integer constant off by one, or ``True``/``False`` swapped. Sites are visited in
source order, so the same code always gives the same mutants. A mutant may be equivalent (the
change cannot be observed, or the tests do not observe it); the benchmark reports survivors.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator

SWAP_COMPARE: dict[type, type] = {
    ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
SWAP_ARITHMETIC: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult, ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
}  # fmt: skip
SWAP_BOOL: dict[type, type] = {ast.And: ast.Or, ast.Or: ast.And}
SYMBOLS = {
    ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
    ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
    ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%", ast.Pow: "**", ast.And: "and", ast.Or: "or",
}  # fmt: skip

# A site: (node, description, apply) where apply(node in a copied tree) returns its replacement.
Site = tuple[ast.AST, str, Callable[[ast.AST], ast.AST]]


def _swap(table: dict[type, type], attribute: str, index: int | None = None) -> Callable[[ast.AST], ast.AST]:
    def apply(node: ast.AST) -> ast.AST:
        if index is None:
            setattr(node, attribute, table[type(getattr(node, attribute))]())
        else:
            getattr(node, attribute)[index] = table[type(getattr(node, attribute)[index])]()
        return node

    return apply


def _set(attribute: str, value: Callable[[ast.AST], object]) -> Callable[[ast.AST], ast.AST]:
    def apply(node: ast.AST) -> ast.AST:
        setattr(node, attribute, value(node))
        return node

    return apply


def _sites(node: ast.AST) -> list[Site]:
    """The single-point mutations possible at one node."""
    sites: list[Site] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in SWAP_COMPARE:
                new = SYMBOLS[SWAP_COMPARE[type(op)]]
                sites.append((node, f"{SYMBOLS[type(op)]} -> {new}", _swap(SWAP_COMPARE, "ops", i)))
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP_ARITHMETIC:
        sites.append(
            (
                node,
                f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[SWAP_ARITHMETIC[type(node.op)]]}",
                _swap(SWAP_ARITHMETIC, "op"),
            )
        )
    elif isinstance(node, ast.BoolOp):
        sites.append((node, f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[SWAP_BOOL[type(node.op)]]}", _swap(SWAP_BOOL, "op")))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        sites.append((node, "not removed", lambda n: n.operand))  # type: ignore[attr-defined]
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        sites.append((node, f"{node.value} -> {not node.value}", _set("value", lambda n: not n.value)))  # type: ignore[attr-defined]
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        sites.append((node, f"{node.value} -> {node.value + 1}", _set("value", lambda n: n.value + 1)))  # type: ignore[attr-defined]
    return sites


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target, self.replacement = target, replacement

    def visit(self, node: ast.AST) -> ast.AST:
        return self.replacement if node is self.target else self.generic_visit(node)


def mutants(source: str, first_line: int = 1) -> Iterator[tuple[str, str]]:
    """(description, mutated source) for every single-point mutation on lines >= ``first_line``,
    in source order. The mutated source is re-generated from the AST (comments are lost)."""
    tree = ast.parse(source)
    nodes = [n for n in ast.walk(tree) if getattr(n, "lineno", 0) >= first_line]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))  # type: ignore[attr-defined]
    positions = {id(n): i for i, n in enumerate(ast.walk(tree))}
    for node, description, apply in (site for n in nodes for site in _sites(n)):
        copied = copy.deepcopy(tree)
        target = next(n for i, n in enumerate(ast.walk(copied)) if i == positions[id(node)])
        mutated = ast.unparse(_Replace(target, apply(target)).visit(copied))
        yield f"line {node.lineno}: {description}", mutated  # type: ignore[attr-defined]


# Runs the tests' calls on both versions: passes when every call returns equal values (and the
# same exception type), fails naming the first call that differs. Runs inside the sandbox.
_ORACLE = """
import copy
_reference, _mutant = {{}}, {{}}
exec({reference!r}, _reference)
exec({mutant!r}, _mutant)
_differences = []


def _outcome(function, args, kwargs):
    try:
        return "value", function(*copy.deepcopy(args), **copy.deepcopy(kwargs))
    except Exception as error:
        return "raised", type(error).__name__


def _spy(*args, **kwargs):
    expected = _outcome(_reference[{entry_point!r}], args, kwargs)
    actual = _outcome(_mutant[{entry_point!r}], args, kwargs)
    if expected[0] != actual[0] or type(expected[1]) is not type(actual[1]) or expected[1] != actual[1]:
        _differences.append(repr(args)[:200])
    if expected[0] == "raised":
        raise RuntimeError(expected[1])
    return expected[1]


exec({test!r}, _reference)
try:
    _reference["check"](_spy)
except AssertionError:
    pass  # the tests judge the reference; only the comparison matters here
assert not _differences, "differs on " + _differences[0]
"""


def equivalence_program(reference: str, mutant: str, test: str, entry_point: str) -> str:
    """A script that passes iff ``mutant`` returns what ``reference`` returns on every call the tests
    make (run it in the sandbox): a surviving mutant that passes it is equivalent on the tests."""
    return _ORACLE.format(reference=reference, mutant=mutant, test=test, entry_point=entry_point)
