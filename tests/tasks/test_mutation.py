import ast

from tracebank.tasks.mutation import mutants

SOURCE = "def f(a, b):\n    if not a and b > 2:\n        return a + 1\n    b -= 1\n    return b in [1] or True\n"


def test_each_operator_gives_one_single_point_mutant_in_source_order():
    found = list(mutants(SOURCE))
    descriptions = [d for d, _ in found]
    assert descriptions == [
        "line 2: and -> or",
        "line 2: not removed",
        "line 2: > -> <=",
        "line 2: 2 -> 3",
        "line 3: + -> -",
        "line 3: 1 -> 2",
        "line 4: - -> +",
        "line 4: 1 -> 2",
        "line 5: or -> and",
        "line 5: in -> not in",
        "line 5: 1 -> 2",
        "line 5: True -> False",
    ]
    original = ast.unparse(ast.parse(SOURCE)).splitlines()
    for description, code in found:
        changed = [i for i, (a, b) in enumerate(zip(original, code.splitlines(), strict=True)) if a != b]
        assert [i + 1 for i in changed] == [int(description.split()[1].rstrip(":"))]  # one line, the named one
        compile(code, "<mutant>", "exec")


def test_mutants_are_deterministic_and_respect_first_line():
    assert list(mutants(SOURCE)) == list(mutants(SOURCE))
    assert all(int(d.split()[1].rstrip(":")) >= 4 for d, _ in mutants(SOURCE, first_line=4))


def test_code_without_operators_has_no_mutants():
    assert list(mutants("def f(xs):\n    return sorted(xs)\n")) == []
