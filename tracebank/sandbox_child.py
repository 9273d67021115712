"""The process inside the sandbox: limit itself, drop privileges, guard, run the code, report.

Started by :mod:`tracebank.sandbox` as ``python -I -B sandbox_child.py`` (inside new network,
PID and mount namespaces where the machine allows). It imports only the standard library, reads
one JSON request on stdin and writes JSON lines to an inherited result descriptor:
``{"event": "violation", ...}`` the moment the guard refuses something, and one
``{"event": "result", "status": ..., "detail": ...}`` after the tests ran. No result line means
the process died (a limit, a signal, ``os._exit``): the parent decides what that was.

The guard is an audit hook (PEP 578): it refuses subprocesses, ``os.system``, sockets, ctypes,
signals to other processes and writes outside the working directory. It is a policy layer; the
containment (rlimits, an unprivileged uid, namespaces, the parent's kill) does not depend on it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import traceback

# Events refused outright, by audit event name (https://docs.python.org/3/library/audit_events.html).
FORBIDDEN = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
    "resource.setrlimit", "resource.prlimit", "os.setuid", "os.chroot", "webbrowser.open", "urllib.Request",
)  # fmt: skip
FORBIDDEN_PREFIXES = ("socket.", "ftplib.", "smtplib.", "telnetlib.", "http.client.", "imaplib.", "poplib.")
# Events that change the file system, with the positions of their path arguments.
PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
    "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,), "os.truncate": (0,), "os.utime": (0,),
    "os.mkfifo": (0,), "os.mknod": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (1,),
    "shutil.copytree": (1,), "os.chflags": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
}  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class Reporter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def emit(self, **fields: object) -> None:
        os.write(self.fd, (json.dumps(fields, default=repr) + "\n").encode())


def set_limits(limits: dict) -> None:
    """Hard limits (soft = hard), so the code cannot raise them again."""
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at cpu, SIGKILL a second later
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("nproc") is not None:  # only binding for a non-root uid: see sandbox.py
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises OSError instead of killing


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024, "nodiratime": 2048,
               "relatime": 1 << 21}  # fmt: skip


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    import ctypes  # before the guard: the guard refuses ctypes to the code

    libc = ctypes.CDLL(None, use_errno=True)
    encode = lambda text: None if text is None else os.fsencode(text)  # noqa: E731
    if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _mounts() -> list[tuple[str, int]]:
    """(mount point, flags to keep on a remount) for every mount in this mount namespace."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
            found.append((point, sum(MOUNT_FLAGS.get(o, 0) for o in fields[5].split(","))))
    return found


def expose_interpreter(paths: list[str]) -> None:
    """Make the interpreter readable to an unprivileged uid when it sits under a private directory
    (e.g. /root/.pyenv): a tmpfs over the private ancestor, with only ``paths`` bound back in."""
    blocked: dict[str, list[str]] = {}
    for path in paths:
        ancestor = "/"
        for part in path.strip("/").split("/")[:-1]:
            ancestor = os.path.join(ancestor, part)
            if not os.stat(ancestor).st_mode & 0o001:
                blocked.setdefault(ancestor, []).append(path)
                break
    for ancestor, inside in blocked.items():
        handles = {path: os.open(path, os.O_PATH) for path in inside}  # reachable after the tmpfs hides them
        _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for path, handle in handles.items():
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
            os.close(handle)


def readonly_filesystem(workdir: str) -> None:
    """Every mount read-only except the workdir (bound onto itself first, so it stays writable)."""
    _mount(workdir, workdir, None, MS_BIND)
    for point, keep in _mounts():
        if point == workdir:
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
        except OSError:
            continue  # e.g. a mount hidden by another: the ones that matter are checked by the tests


def drop_privileges(uid: int | None, workdir: str) -> None:
    """As root, become an unused uid: RLIMIT_NPROC then binds and root-owned files are read-only."""
    if uid is None:
        return
    os.chown(workdir, uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _inside(path: object, root: str) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor: opening it was checked
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        path = os.fspath(path)  # type: ignore[arg-type]
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def install_guard(workdir: str, reporter: Reporter) -> None:
    root = os.path.realpath(workdir)

    def refuse(event: str, args: tuple) -> None:
        reporter.emit(event="violation", what=event, args=repr(args)[:200])
        raise PermissionError(f"sandbox: {event} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event in FORBIDDEN or event.startswith(FORBIDDEN_PREFIXES):
            refuse(event, args)
        elif event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            if writes and not _inside(path, root):
                refuse("open for writing outside the sandbox", args)
        elif event in PATH_EVENTS and not all(
            _inside(args[i], root) for i in PATH_EVENTS[event] if i < len(args) and args[i] is not None
        ):
            refuse(f"{event} outside the sandbox", args)

    sys.addaudithook(hook)


def _failure(error: BaseException, sources: dict[str, list[str]]) -> tuple[str, str]:
    """(status, detail) for an exception raised by the code or its tests."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename in sources]
    last = frames[-1] if frames else None
    where = f"{last.filename}:{last.lineno}" if last else "?"
    if isinstance(error, AssertionError) and last is not None and last.filename == "<test>":
        line = sources["<test>"][last.lineno - 1].strip() if last.lineno <= len(sources["<test>"]) else ""
        return "assertion_failed", (line + (f"  ({error})" if str(error) else ""))[:500]
    if isinstance(error, MemoryError):
        return "memory_limit", f"MemoryError at {where}"
    if isinstance(error, PermissionError) and str(error).startswith("sandbox:"):
        return "sandbox_violation", str(error)[:500]
    return "runtime_error", f"{type(error).__name__}: {error} (at {where})"[:500]


def run(request: dict, reporter: Reporter) -> tuple[str, str | None]:
    """Compile and run each part in one namespace, then call ``check(entry point)`` if asked."""
    sources = {name: text.splitlines() for name, text in request["parts"]}
    namespace: dict = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    try:
        codes = [compile(text, name, "exec") for name, text in request["parts"]]
    except (SyntaxError, ValueError) as error:  # ValueError: null bytes in the source
        return "parse_error", f"{type(error).__name__}: {error}"[:500]
    except (MemoryError, RecursionError) as error:
        return "parse_error", f"{type(error).__name__} while compiling"
    try:
        for code in codes:
            exec(code, namespace)
        entry_point = request.get("call")
        if entry_point:
            if entry_point not in namespace:
                return "runtime_error", f"NameError: the code defines no {entry_point!r}"
            namespace["check"](namespace[entry_point])
    except BaseException as error:  # SystemExit and KeyboardInterrupt included: exiting is not passing
        return _failure(error, sources)
    return "passed", None


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    reporter = Reporter(request["result_fd"])
    workdir = request["workdir"]
    set_limits(request["limits"])
    layers = {"readonly_fs": False, "uid": request.get("uid")}
    if request.get("mount_namespace"):
        if request.get("uid") is not None:
            expose_interpreter(request["interpreter_paths"])  # without it the uid cannot import: let it fail
        try:
            readonly_filesystem(workdir)
            layers["readonly_fs"] = True
        except OSError:  # e.g. a user namespace that may not bind: the guard still refuses writes outside
            pass
    os.chdir(workdir)
    drop_privileges(request.get("uid"), workdir)
    reporter.emit(event="layers", **layers)
    os.environ.clear()
    os.environ.update({"HOME": request["workdir"], "TMPDIR": request["workdir"], "PATH": "/usr/bin:/bin"})
    if request.get("guard", True):
        install_guard(request["workdir"], reporter)
    status, detail = run(request, reporter)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    reporter.emit(event="result", status=status, detail=detail)
    os._exit(0)  # no atexit handlers or finalizers the code may have registered


if __name__ == "__main__":
    main()
