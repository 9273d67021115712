"""The sandbox under hostile code: every attack ends as a failure with a reason, and nothing leaks.

Each hostile case runs twice: with the guard (the audit hook that refuses the action) and without
it, where the layers below (namespaces, an unprivileged uid, rlimits, the kill) must contain it.
Fork bombs are bounded by RLIMIT_NPROC on a private uid (or the user's own count plus the limit);
test_fork_count_is_bounded checks that bound before the unbounded bomb runs.
"""

import os
import socket
import uuid

import pytest

from tracebank.errors import TracebankError
from tracebank.sandbox import SandboxLimits, _live_processes, namespace_prefix, run_python

TEST = "def check(candidate):\n    assert candidate() == 1\n"
FAST = SandboxLimits(wall_s=3, cpu_s=2, max_processes=8)
needs_namespaces = pytest.mark.skipif(namespace_prefix() is None, reason="no unshare/namespaces here")


def run(code: str, limits: SandboxLimits = FAST, test: str = TEST):
    result = run_python([("<solution>", code), ("<test>", test)], "f", limits)
    if result.uid is not None:  # nothing of the run survives it
        assert _live_processes(result.uid) == []
    return result


def unguarded(limits: SandboxLimits = FAST) -> SandboxLimits:
    return SandboxLimits(**{**limits.__dict__, "guard": False})


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    yield server
    server.close()


def assert_nobody_connected(server: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        server.accept()


@pytest.mark.parametrize(
    ("field", "value"),
    [("wall_s", 0), ("cpu_s", -1), ("memory_mb", 32), ("file_mb", 0), ("max_processes", 0), ("open_files", True)],
)
def test_limits_reject_bad_values(field, value):
    with pytest.raises(TracebankError, match=field):
        SandboxLimits(**{field: value})


def test_limits_reject_an_unknown_isolation():
    with pytest.raises(TracebankError, match="isolation"):
        SandboxLimits(isolation="vm")


def test_passing_code_passes_and_the_first_failing_assertion_is_reported():
    ok = run("def f():\n    return 1\n")
    assert ok.passed and ok.status == "passed" and ok.detail is None
    test = (
        "def check(candidate):\n    assert candidate() == 1\n    assert candidate() == 2, 'second'\n    assert False\n"
    )
    failed = run("def f():\n    return 1\n", test=test)
    assert failed.status == "assertion_failed" and failed.detail.startswith("assert candidate() == 2, 'second'")


def test_errors_in_the_code_are_runtime_errors_and_syntax_errors_parse_errors():
    assert run("def f():\n    return 1 / 0\n").status == "runtime_error"
    assert "ZeroDivisionError" in run("def f():\n    return 1 / 0\n").detail
    assert run("def f(:\n").status == "parse_error"
    assert run("def g():\n    return 1\n").detail == "NameError: the code defines no 'f'"


@pytest.mark.parametrize("guard", [True, False])
def test_infinite_loop_times_out(guard):
    limits = FAST if guard else unguarded()
    result = run("def f():\n    while True:\n        pass\n", limits)
    assert result.status == "timeout" and result.duration_s < 30


def test_sleeping_forever_is_killed_at_the_wall_time():
    assert run("import time\ndef f():\n    time.sleep(600)\n").status == "timeout"


@pytest.mark.parametrize("guard", [True, False])
def test_a_10_gb_allocation_fails_with_a_memory_error(guard):
    result = run("def f():\n    return len(bytearray(10 * 1024**3))\n", FAST if guard else unguarded())
    assert result.status == "memory_limit"


def test_the_guard_refuses_fork():
    code = "import os\ndef f():\n    while True:\n        os.fork()\n"
    result = run(code)
    assert result.status == "sandbox_violation" and result.violations[0] == "os.fork"


def test_fork_count_is_bounded_without_the_guard():
    # forks children that sleep, counting successes until the kernel refuses (RLIMIT_NPROC)
    code = (
        "import os, time\n"
        "def f():\n"
        "    forked = 0\n"
        "    for _ in range(200):\n"
        "        try:\n"
        "            pid = os.fork()\n"
        "        except OSError:\n"
        "            break\n"
        "        if pid == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        forked += 1\n"
        "    return forked\n"
    )
    test = "def check(candidate):\n    n = candidate()\n    assert n < 0, f'forked {n}'\n"
    result = run(code, unguarded(), test)
    assert result.status == "assertion_failed"
    forked = int(result.detail.rsplit("forked ", 1)[1].rstrip(")"))
    assert 0 < forked < FAST.max_processes  # bounded, and the children died with the run (see run())


def test_fork_bomb_without_the_guard_ends_as_a_timeout_and_leaves_nothing():
    code = "import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"
    result = run(code, unguarded(SandboxLimits(wall_s=2, cpu_s=1, max_processes=8)))
    assert result.status == "timeout"


def test_a_process_that_escapes_its_session_dies_with_the_run():
    code = (
        "import os, time\ndef f():\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n    return 1\n"
    )
    assert run(code, unguarded()).passed  # run() asserts no process of the run is left


@pytest.mark.parametrize("guard", [True, False])
def test_writes_outside_the_temp_dir_fail_and_leave_no_file(guard, tmp_path):
    if not guard and namespace_prefix() is None:
        pytest.skip("without the guard, only a read-only mount namespace stops writes to /tmp")
    target = f"/tmp/tracebank-sandbox-test-{uuid.uuid4().hex}"
    result = run(f"def f():\n    open({target!r}, 'w').write('x')\n    return 1\n", FAST if guard else unguarded())
    assert not result.passed and not os.path.exists(target)
    assert result.status == ("sandbox_violation" if guard else "runtime_error")


def test_writes_inside_the_temp_dir_work():
    assert run("def f():\n    open('notes.txt', 'w').write('x')\n    return len(open('notes.txt').read())\n").passed


@pytest.mark.parametrize("guard", [True, False])
def test_a_socket_cannot_reach_the_host(guard, listener):
    if not guard and namespace_prefix() is None:
        pytest.skip("without the guard, only a network namespace keeps sockets off the host")
    port = listener.getsockname()[1]
    code = f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 1\n"
    result = run(code, FAST if guard else unguarded())
    assert not result.passed
    assert result.status == ("sandbox_violation" if guard else "runtime_error")
    assert_nobody_connected(listener)


@needs_namespaces
def test_without_a_network_namespace_the_guard_disables_sockets(listener):
    port = listener.getsockname()[1]
    code = f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 1\n"
    result = run(code, SandboxLimits(wall_s=3, cpu_s=2, own_network=False))
    assert result.status == "sandbox_violation" and result.violations[0].startswith("socket.")
    assert_nobody_connected(listener)


@pytest.mark.parametrize("guard", [True, False])
def test_os_system_fails_and_its_command_has_no_effect(guard):
    if not guard and namespace_prefix() is None:
        pytest.skip("without the guard, only a read-only mount namespace stops the shell's write")
    target = f"/tmp/tracebank-sandbox-test-{uuid.uuid4().hex}"
    result = run(f"import os\ndef f():\n    return os.system('touch {target}')\n", FAST if guard else unguarded())
    assert not result.passed and not os.path.exists(target)
    if guard:
        assert result.status == "sandbox_violation" and result.violations == ("os.system",)


def test_a_refused_action_fails_the_run_even_when_the_code_catches_it():
    code = "import os\ndef f():\n    try:\n        os.system('true')\n    except PermissionError:\n        pass\n    return 1\n"
    assert run(code).status == "sandbox_violation"


@pytest.mark.parametrize("exit_call", ["import sys\n    sys.exit(0)", "import os\n    os._exit(0)"])
def test_exiting_early_is_not_passing(exit_call):
    result = run(f"def f():\n    {exit_call}\n")
    assert not result.passed and result.status in ("runtime_error", "crashed")


def test_a_too_large_file_fails():
    result = run("def f():\n    open('big', 'wb').write(b'x' * (64 << 20))\n    return 1\n")
    assert result.status == "runtime_error" and "File too large" in result.detail


@needs_namespaces
def test_namespaces_make_every_mount_but_the_workdir_read_only():
    result = run("def f():\n    return 1\n")
    assert result.isolation == "namespaces" and result.readonly_fs


@pytest.mark.skipif(os.geteuid() != 0, reason="the private uid is used only when running as root")
def test_as_root_the_code_runs_as_a_private_unprivileged_uid():
    result = run("import os\ndef f():\n    return int(os.getuid() != 0)\n")
    assert result.passed and result.uid is not None and result.uid > 0
