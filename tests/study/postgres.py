"""A throwaway PostgreSQL server for the tests that share a study through it.

Debian's postgresql package (``/usr/lib/postgresql/*/bin``) and psycopg are needed;
without them a test skips, unless ``BATCHLAB_REQUIRE_POSTGRES=1`` (CI) makes that a
failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_POSTGRES = os.environ.get("BATCHLAB_REQUIRE_POSTGRES") == "1"


@dataclass(frozen=True)
class Server:
    """A running server: its binaries, its data/socket directory, its TCP port.

    The superuser ``batchlab`` connects over the Unix socket in ``data`` without a
    password.
    """

    bin_dir: Path
    data: Path
    port: int


def postgres_bin() -> Path | None:
    for version in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (version / "initdb").exists():
            return version
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_server(auth_host: str = "trust") -> Iterator[Server]:
    """Start a server (TCP clients authenticate by ``auth_host``), stop it afterwards."""
    bin_dir = postgres_bin()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        bin_dir = None
    if bin_dir is None:
        message = (
            "PostgreSQL server binaries or psycopg missing "
            "(apt-get install postgresql; pip install 'batchlab[postgres]')"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    data = Path(tempfile.mkdtemp(prefix="batchlab-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    db = str(data / "db")
    initdb = [str(bin_dir / "initdb"), "-D", db, "-U", "batchlab"]
    auth = ["--auth-local=trust", f"--auth-host={auth_host}"]
    subprocess.run([*_run_as(), *initdb, *auth], check=True, capture_output=True)
    server = Server(bin_dir, data, port)
    start_server(server)
    try:
        yield server
    finally:
        stop_server(server, mode="immediate")
        shutil.rmtree(data, ignore_errors=True)


def _run_as() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start_server(server: Server) -> None:
    """Start (or start again) ``server`` on its data directory and port."""
    options = f"-p {server.port} -k {server.data} -c listen_addresses=127.0.0.1"
    db, log = str(server.data / "db"), str(server.data / "log")
    start = [str(server.bin_dir / "pg_ctl"), "-D", db, "-l", log, "-o", options, "-w"]
    subprocess.run([*_run_as(), *start, "start"], check=True, capture_output=True)


def stop_server(server: Server, mode: str = "fast") -> None:
    """Stop ``server`` (``fast``: its clients' sessions are ended, as by an admin)."""
    stop = [str(server.bin_dir / "pg_ctl"), "-D", str(server.data / "db"), "-m", mode, "stop"]
    subprocess.run([*_run_as(), *stop], capture_output=True)
