"""Every third-party module the package imports is a declared dependency (a fresh install has it)."""

import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests import ROOMS, ROOT, module_imports

OPTIONAL = {"vllm"}  # the vllm backend imports it behind a clear "pip install vllm" error


def imported_modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for directory in ROOMS:
        for path in (ROOT / directory).rglob("*.py"):
            for _, name in module_imports(path):
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalize(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    distributions = packages_distributions()
    missing = []
    for module, where in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module in ("tracebank", "__future__") or module in OPTIONAL:
            continue
        owners = {normalize(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            missing.append(f"{module} (imported in {where}, from {sorted(owners)})")
    assert not missing, f"undeclared dependencies in pyproject.toml: {missing}"
