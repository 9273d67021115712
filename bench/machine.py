"""Facts about the machine a benchmark ran on, printed beside its numbers."""

import subprocess


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def goals_table(goals: list[tuple[str, bool]], heading: str = "", smoke: bool = False) -> int:
    """Print the goals last, one ``met``/``MISS`` line each, and return the exit status: 1 when a goal
    is missed, except at smoke sizes (where the numbers are noise and only the run is checked)."""
    print(f"\n== goals{f' ({heading})' if heading else ''}")
    for text, ok in goals:
        print(f"{'met ' if ok else 'MISS'}  {text}")
    if smoke:
        print("(smoke size: the goals are not enforced)")
    return 0 if smoke or all(ok for _, ok in goals) else 1
