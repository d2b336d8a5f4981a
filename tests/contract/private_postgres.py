"""A PostgreSQL cluster of a test's own, for faults the shared server must not be driven into.

The tests share one server (127.0.0.1:5432): filling its lock table would fail everyone else's
sessions. :func:`private_cluster` starts a small cluster instead (initdb, then pg_ctl, from the
machine's PostgreSQL binaries), on a free port, with a lock table of a few hundred slots, and
stops it and removes its files when the test ends. initdb refuses root, so as root (CI) the
cluster runs as the ``postgres`` OS user the server package made.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest


@dataclass(frozen=True)
class PrivateCluster:
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"
    dbname: str = "postgres"
    data: Path | None = None
    bindir: str = ""
    os_user: str | None = None  # who runs pg_ctl (the ``postgres`` OS user as root)
    options: str = ""  # the server's command line options, to start it again
    password: str | None = None  # the login's password, when it needs one

    def stop(self, mode: str, wait: bool = False) -> None:
        """Tell the server to stop (``smart``: after its sessions end; ``fast``: ending them), and
        return without waiting for it to be down unless ``wait``."""
        subprocess.run(
            [f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop"],
            user=self.os_user, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        """Start the stopped server again, as it was, and return once it accepts connections."""
        assert self.data is not None
        subprocess.run(
            [f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.data.parent / "log"), "-w",
             "-t", "60", "-o", self.options, "start"],
            user=self.os_user, cwd=self.data.parent, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def freeze(self) -> None:
        """SIGSTOP every process of the server: it still takes TCP connections (the kernel
        completes the handshake into its listen queue, and acknowledges what its sessions are
        sent) but answers nothing, as a hung server, or one whose replies a firewall drops, does."""
        for process in self._processes():
            process.suspend()

    def thaw(self) -> None:
        """SIGCONT every process of the frozen server: it carries on where it stopped."""
        for process in self._processes():
            process.resume()

    def _processes(self) -> list[psutil.Process]:
        assert self.data is not None
        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        return [postmaster, *postmaster.children()]

    def url(self, password: str | None = None) -> str:
        """The store URL of this cluster's database (with ``password``, else its own, if any)."""
        secret = password if password is not None else self.password
        login = f"{self.user}:{secret}" if secret is not None else self.user
        return f"postgresql+psycopg://{login}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, **options: Any) -> psycopg.Connection[Any]:
        given = {"host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname, **options}
        if self.password is not None:
            given.setdefault("password", self.password)
        return psycopg.connect(**given)


def _bin_directory() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: this test must run)")
    pytest.skip(why)


@contextmanager
def private_cluster(*settings: str, password: str | None = None) -> Iterator[PrivateCluster]:
    """A running cluster with ``settings`` (``name=value``) on top of a small one's; logins need
    ``password`` when one is given (else any login is trusted)."""
    bindir = _bin_directory()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (initdb) on this machine")
    as_root = os.geteuid() == 0
    user = None
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and no 'postgres' OS user to run initdb as")
        user = "postgres"
    top = Path(tempfile.mkdtemp(prefix="ferryman-pg-"))
    if as_root:
        os.chown(top, owner.pw_uid, owner.pw_gid)
    data = top / "data"

    def run(*args: str) -> None:
        subprocess.run(args, user=user, cwd=top, check=True, capture_output=True, timeout=120)

    port = _free_port()
    options = [
        f"-p {port}",
        f"-k {top}",
        "-c listen_addresses=127.0.0.1",
        "-c max_connections=5",
        "-c max_locks_per_transaction=10",
        "-c autovacuum=off",  # nothing of its own takes or frees lock slots meanwhile
        "-c fsync=off",
        *(f"-c {setting}" for setting in settings),
    ]
    cluster = PrivateCluster(
        port, data=data, bindir=bindir, os_user=user, options=" ".join(options), password=password
    )
    auth = ["-A", "trust"]
    if password is not None:
        (top / "pw").write_text(password + "\n")
        if as_root:
            os.chown(top / "pw", owner.pw_uid, owner.pw_gid)
        auth = ["-A", "scram-sha-256", f"--pwfile={top / 'pw'}"]
    try:
        run(f"{bindir}/initdb", "-D", str(data), *auth, "-U", cluster.user, "--no-sync")
        run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(top / "log"), "-w", "-t", "60",
            "-o", cluster.options, "start")  # fmt: skip
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():  # a test's stop may have it gone meanwhile
            with contextlib.suppress(psutil.Error, ValueError, OSError):
                cluster.thaw()  # a frozen server would not act on the stop
            subprocess.run([f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"],
                           user=user, cwd=top, capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(top, ignore_errors=True)


def fill_lock_table(conn: psycopg.Connection[Any]) -> int:
    """Takes advisory locks in ``conn`` (autocommit) until the server's lock table is full; they
    stay held until the session ends. Returns how many it holds."""
    held = 0
    while True:
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (held,))
        except psycopg.errors.OutOfMemory:
            return held
        held += 1
