"""The README is the front door and docs/ the manual: their commands run as written, every shell block
is run by a test or says why not, and the site builds offline with --strict."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import ROOT
from tests.docs_blocks import blocks, pages, run_by, walkthrough_pages

README = (ROOT / "README.md").read_text()
NEEDS_DATA = pytest.mark.skipif(
    not (ROOT.parent / "shared" / "data" / "gsm8k").is_dir(), reason="the docs' commands read ../shared/data"
)
README_MAX_LINES = 150


def walkthrough_commands() -> list[str]:
    """The walkthrough's commands in order, less the blocks whose marker names the test that runs them."""
    return [line for page in walkthrough_pages() for block in blocks(page) if not block.marker
            for line in block.lines if line.startswith("tracebank ")]  # fmt: skip


def checkout_like(tmp_path):
    """A working directory shaped like the checkout: recipes/ and ../shared/ resolve as documented,
    and whatever the commands write (.tracebank/, exports/) stays inside tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    env = {k: v for k, v in os.environ.items() if k != "TRACEBANK_CATALOG"}  # the default ./.tracebank, as documented
    return work, env


def run_tracebank(command: str, work, env, timeout=900) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "tracebank", *shlex.split(command)[1:]]
    return subprocess.run(args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_the_readme_is_a_front_door():
    assert len(README.splitlines()) <= README_MAX_LINES, "README.md grew past a front door: move the detail into docs/"
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"
    image = re.search(r"!\[[^]]*\]\(([^)]+)\)", README)
    assert image and (ROOT / image.group(1)).is_file()


def test_make_targets_named_in_the_readme_and_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    for page in pages():
        for target in set(re.findall(r"(?:`|^)make ([a-z-]+)", page.read_text(), flags=re.MULTILINE)):
            assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), f"{page.name} names `make {target}`"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_shell_block_is_run_by_a_test_or_says_why_not():
    walkthrough = set(walkthrough_pages())
    for page in pages():
        for block in blocks(page):
            where = f"{page.relative_to(ROOT)}: {block.lines[:1]}"
            if page in walkthrough and not block.marker:
                continue
            if page in walkthrough:
                assert not block.marker.startswith("not run"), where
            if block.marker.startswith("not run:"):
                assert len(block.marker) > len("not run: ") + 10, f"{where}: say why it is not run"
                continue
            found = re.fullmatch(r"run: (tests/\S+\.py)::(\w+)", block.marker)
            assert found, f"{where}: no test runs this block; mark it <!-- run: FILE::TEST --> or <!-- not run: why -->"
            path, test = found.groups()
            assert f"def {test}(" in (ROOT / path).read_text(), f"{where}: {path} has no {test}"


def test_the_quick_start_is_the_same_in_the_readme_and_the_docs():
    quick = run_by("tests/test_docs.py::test_quick_start_runs_as_written")
    assert {b.page.name for b in quick} == {"README.md", "getting-started.md"}
    assert len({b.body for b in quick}) == 1


@pytest.mark.slow
@NEEDS_DATA
def test_quick_start_runs_as_written(tmp_path):
    (block, *_) = run_by("tests/test_docs.py::test_quick_start_runs_as_written")
    work, env = checkout_like(tmp_path)
    assert len(block.lines) == 5
    for command in block.lines:
        done = run_tracebank(command, work, env)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert (work / "exports" / "quick-v1" / "README.md").is_file()


def test_the_guarantees_block_fails_as_its_comments_say(tmp_path):
    """Each line of the hostile-input block either works or ends in the `# error: ...` its comment names."""
    (block,) = run_by("tests/test_docs.py::test_the_guarantees_block_fails_as_its_comments_say")
    env = {k: v for k, v in os.environ.items() if k != "TRACEBANK_CATALOG"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    failures = 0
    for line in block.lines:
        command, _, expected = line.partition("# error:")
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        if not expected:
            assert done.returncode == 0, f"{line}\n{done.stderr}"
            continue
        failures += 1
        assert done.returncode == 1 and done.stderr.startswith("error: "), f"{line}\n{done.stderr}"
        for fragment in (f.strip() for f in expected.split("...")):
            assert fragment in done.stderr, f"{line}: {fragment!r} not in {done.stderr!r}"
    assert failures >= 2


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a dozen model-loading commands in a row; minutes each on a busy 2-core machine
@NEEDS_DATA
def test_walkthrough_commands_run_as_written(tmp_path):
    commands = walkthrough_commands()
    assert len(commands) >= 12
    work, env = checkout_like(tmp_path)
    for command in commands:
        done = run_tracebank(command, work, env)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert (work / "exports" / "gsm8k-v1" / "README.md").is_file()


def test_the_site_builds_offline_with_strict_and_its_references_cover_the_code(tmp_path):
    from tracebank.cli.main import app
    from tracebank.filters.runner import FILTERS

    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    filters = (site / "reference" / "filters.html").read_text()
    for name in FILTERS:
        assert f'id="{name}"' in filters, f"the filter reference has no section for {name}"
    cli = (site / "reference" / "cli.html").read_text()
    for command in [c.name for c in app.registered_commands if c.name] + ["sft", "orpo", "dpo"]:
        assert command in cli
    assert (site / "walkthrough" / "train.html").is_file() and (site / "python-api.html").is_file()
