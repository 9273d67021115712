"""Facts about the machine a benchmark ran on, printed beside its numbers."""

import subprocess


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
