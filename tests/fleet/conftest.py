"""A real PostgreSQL server for the fleet tests: ``initdb`` + ``pg_ctl`` on a temporary
directory and a free loopback port, started once per session.

PostgreSQL refuses to run as root, so under root (the test command on CI) the server runs as
the ``postgres`` system user (or ``nobody``) in a directory owned by it. A missing server is an
error naming the package to install (scripts/run-tests.sh installs it), never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql "
    "(scripts/run-tests.sh installs it)"
)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    return Path(versions[-1]).parent if versions else None


@dataclass(frozen=True, slots=True)
class Postgres:
    """A running server; ``url(db)`` for a database on it, ``create_db()`` for a fresh one."""

    port: int
    user: str
    host: str = "127.0.0.1"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{db}"

    def create_db(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _run_as() -> dict[str, Any]:
    """subprocess keyword arguments that drop root to an unprivileged user."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    pytest.fail("running as root and neither a 'postgres' nor a 'nobody' user exists")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL for the session (initdb on a temp dir, pg_ctl on a free port)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail(INSTALL_HINT)
    drop = _run_as()
    base = Path(tempfile.mkdtemp(prefix="shelfedge-pg-"))
    if drop:
        os.chown(base, drop["user"], drop["group"])
    data, log = base / "data", base / "server.log"
    port, user = _free_port(), "shelfedge"
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(base)}

    def run(*cmd: str) -> None:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env=env, cwd=base, **drop
        )
        if res.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}\n{tail}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "start")
    try:
        yield Postgres(port, user)
    finally:
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
            env=env,
            cwd=base,
            **drop,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres.create_db()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'fleet.db'}"
