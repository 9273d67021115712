"""A real PostgreSQL server for tests: a throwaway cluster listening on 127.0.0.1, with password logins.

It uses the server binaries of Debian's ``postgresql`` package (/usr/lib/postgresql/N/bin) or any
``initdb`` on PATH. PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` system user (which the package creates) in a temporary directory it owns. Tests reach
it over TCP as a password-protected superuser; the password travels only in PGPASSWORD.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "tracebank"


def server_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and psql, newest PostgreSQL first; None if absent."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _server_user() -> str | None:
    """Who runs the server: the current user, or ``postgres`` when we are root (None if that user is missing)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path  # owned by the server's user: data directory, unix socket, log
    port: int
    password: str
    user: str  # the system user the server runs as

    def dsn(self, dbname: str) -> str:
        """A libpq connection string for ``dbname`` over TCP, without the password (that is PGPASSWORD's)."""
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user={SUPERUSER}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one SQL statement with psql over TCP as the password-protected superuser; returns its output."""
        env = {**os.environ, "PGPASSWORD": self.password}
        command = [str(self.bindir / "psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql, self.dsn(dbname)]
        return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its connection string."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def _run(self, *args: str) -> None:
        as_user = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}
        done = subprocess.run(
            args, cwd=self.root, capture_output=True, text=True, **(as_user if os.geteuid() == 0 else {})
        )
        if done.returncode:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}{log[-2000:]}")

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        shutil.chown(pwfile, self.user)
        data = str(self.root / "data")
        # Password logins over TCP (scram), trust only on the private unix socket in root.
        self._run(str(self.bindir / "initdb"), "-D", data, "-U", SUPERUSER, f"--pwfile={pwfile}", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
        pwfile.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", data, "-l", str(self.root / "server.log"), "-w", "-o", options, "start"
        )

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")


def running_server() -> Iterator[PostgresServer]:
    """Start a fresh cluster, yield it, stop it and delete its files; skips the test when none can run."""
    bindir, user = server_bindir(), _server_user()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install -y postgresql)")
    if user is None:
        pytest.skip("running as root needs the postgres system user, which Debian's postgresql package creates")
    root = Path(tempfile.mkdtemp(prefix="tracebank-pg-"))
    shutil.chown(root, user)
    server = PostgresServer(bindir, root, _free_port(), secrets.token_urlsafe(16), user)
    try:
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the test session."""
    yield from running_server()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection string to a new, empty database; the password is in PGPASSWORD (inherited by subprocesses)."""
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    return postgres_server.create_database(f"tb_{secrets.token_hex(6)}")
