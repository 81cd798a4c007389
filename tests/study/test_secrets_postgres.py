"""A PostgreSQL study whose URL holds a password never writes or shows it (issue #22,
item 1): every command a user runs, every file of the study directory and every
row of the database are searched for a sentinel password. The server asks for the
password (scram-sha-256), so each command that succeeds really had it: from the URL,
in memory, or from PGPASSWORD where the URL came from a saved file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from .checks import assert_each_slot_once
from .conftest import LINREG_STUDY
from .postgres import postgres_server
from .test_cli_study import write_config

SENTINEL = "s3ntinel-PW-4711"


@pytest.fixture
def password_postgres():
    """A throwaway server that wants a password over TCP: (bin dir, socket dir, port).

    Role ``sentinel`` (password :data:`SENTINEL`) owns database ``studies``; the
    superuser ``batchlab`` connects over the Unix socket without one.
    """
    with postgres_server(auth_host="scram-sha-256") as server:  # skips without PostgreSQL
        import psycopg

        with psycopg.connect(
            host=str(server.data),
            port=server.port,
            user="batchlab",
            dbname="postgres",
            autocommit=True,
        ) as connection:
            connection.execute(f"CREATE ROLE sentinel LOGIN PASSWORD '{SENTINEL}'")
            connection.execute("CREATE DATABASE studies OWNER sentinel")
        yield server.bin_dir, server.data, server.port


def leaks(text: str) -> bool:
    """Whether ``text`` shows the sentinel, even folded across lines by a narrow console."""
    return SENTINEL in text or SENTINEL in re.sub(r"\s", "", text)


@pytest.mark.slow
def test_the_password_is_never_written_or_shown(tmp_path, password_postgres):
    bin_dir, socket_dir, port = password_postgres
    full = f"postgresql+psycopg://sentinel:{SENTINEL}@127.0.0.1:{port}/studies"
    bare = f"postgresql+psycopg://sentinel@127.0.0.1:{port}/studies"
    base = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PYTHONPATH")}
    # No ~/.pgpass of this machine's user may help (or hide a failure); wide lines.
    base |= {"PGPASSFILE": str(tmp_path / "no.pgpass"), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    with_password = base | {"PGPASSWORD": SENTINEL}
    outputs: list[str] = []

    def batchlab(*args: str, env: dict[str, str], code: int = 0) -> str:
        script = Path(sys.executable).with_name("batchlab")
        done = subprocess.run(
            [str(script), *args], env=env, capture_output=True, text=True, timeout=600
        )
        outputs.append(done.stdout + "\n" + done.stderr)  # (the command line is the user's)
        assert done.returncode == code, outputs[-1]
        return outputs[-1]

    study = {**LINREG_STUDY, "storage": full}
    study["search"] = {**LINREG_STUDY["search"], "trials_per_rung": 3}
    config = write_config(tmp_path, study, "study.toml")  # the user's own file
    out = tmp_path / "runs" / "secret"

    # The URL with its password, in the config: the study and its local workers connect.
    batchlab("study", "run", str(config), "--out", str(out), "--workers", "2", env=base)
    assert f'"storage": "{bare}"' in (out / "config.json").read_text()
    # Another process reads the URL from config.json: the password comes from libpq's
    # environment, and without it the command fails, clearly and without a traceback.
    batchlab("study", "status", str(out), env=with_password)
    failed = batchlab("study", "status", str(out), env=base, code=2)
    assert "cannot open storage" in failed and "Traceback" not in failed
    batchlab("study", "resume", str(out), "--json", env=with_password)
    # Workers on "other machines": the full URL on their command line, or the bare one.
    joined = batchlab("study", "worker", full, "--threads", "1", env=base)
    assert "sentinel:***@127.0.0.1" in joined and "this worker ran 0" in joined
    batchlab("study", "worker", bare, "--threads", "1", env=with_password)
    failed = batchlab("study", "worker", full, "--study", "no-such-study", env=base, code=2)
    assert "no study named 'no-such-study'" in failed
    failed = batchlab("study", "worker", full.replace("/studies", "/no_such_db"), env=base, code=2)
    assert "sentinel:***@127.0.0.1" in failed
    batchlab("report", str(out), env=base)
    assert (out / "report.html").exists()
    assert_each_slot_once(full, 3)  # 3 rungs x 3 slots, each finished once
    # The database itself: the config it keeps for workers holds no password either.
    dump = subprocess.run(
        [str(bin_dir / "pg_dump"), "-h", str(socket_dir), "-p", str(port), "-U", "batchlab"]
        + ["studies"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert bare in dump.stdout.replace("\\", "") and not leaks(dump.stdout)

    # Resume without its trials (issue #22, item 7): the rungs deleted from the database.
    for name in optuna.study.get_all_study_names(full):
        optuna.delete_study(study_name=name, storage=full)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    gone = batchlab("study", "resume", str(out), env=with_password, code=2)
    assert "are gone" in gone and bare in " ".join(gone.split())
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    assert SENTINEL in config.read_text()  # the test did use it
    for text in outputs:
        assert not leaks(text), text
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {"config.json", "results.json", "results.csv", "report.html"} <= {p.name for p in files}
    for path in files:
        assert not leaks(path.read_bytes().decode("utf-8", "replace")), path
