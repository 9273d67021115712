"""The README is the front door: every `tracebank` command in its walkthrough runs, in order."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def walkthrough_commands() -> list[str]:
    section = README.split("<!-- walkthrough:")[1].split("<!-- end walkthrough -->")[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("tracebank ")]


def test_make_targets_named_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"(?:`|^)make ([a-z-]+)", README, flags=re.MULTILINE)):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), (
            f"README names `make {target}`, the Makefile has none"
        )
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a dozen model-loading commands in a row; minutes each on a busy 2-core machine
@pytest.mark.skipif(
    not (ROOT.parent / "shared" / "data" / "gsm8k").is_dir(), reason="the walkthrough reads ../shared/data"
)
def test_walkthrough_commands_run_as_written(tmp_path):
    commands = walkthrough_commands()
    assert len(commands) >= 12
    # A working directory shaped like the checkout: recipes/ and ../shared/ resolve as documented,
    # and whatever the commands write (.tracebank/, exports/) stays inside tmp_path.
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    env = {k: v for k, v in os.environ.items() if k != "TRACEBANK_CATALOG"}  # the default ./.tracebank, as documented
    for command in commands:
        args = [sys.executable, "-m", "tracebank", *shlex.split(command)[1:]]
        done = subprocess.run(
            args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert (work / "exports" / "gsm8k-v1" / "README.md").is_file()
