"""A throwaway PostgreSQL server for the tests: `initdb` + `pg_ctl start` in a temporary folder, on a Unix
socket only (no TCP port), stopped afterwards even when a test fails.

As root the server runs as `nobody` (`postgres` refuses to run as root). Roles: `paradis` (the superuser,
trusted: no password) and `secret`, whose password (`SECRET_PASSWORD`) the server checks (scram-sha-256), for
the wrong-password test. Where the binaries are missing the tests that need a server are skipped with the
reason, except under CI (the env var CI set, as `.ci/run` has it): there a missing binary is a failure.

Tests take the session fixture `postgres` (`from postgres_server import postgres_fixture  # noqa: F401`);
each creates its own database with `postgres.database(name)`, which returns its URL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")
SECRET_PASSWORD = "right-password"
HBA = """\
# The tests' server: Unix socket only; `secret` must give its password, everyone else is trusted.
local all secret scram-sha-256
local all all trust
"""


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


class PostgresServer:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder / "pgdata"
        # Only the socket's name (no TCP): a port of its own keeps its SysV shared-memory key apart from other
        # servers' (pytest-xdist workers start one each).
        self.port = port or 20000 + os.getpid() % 30000
        self.user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    def url(self, database: str = "postgres", user: str = "paradis", password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{quote(password, safe='')}"
        return f"postgresql://{auth}@/{database}?host={self.dir}&port={self.port}"

    def _run(self, *argv: str) -> str:
        proc = subprocess.run([*self.user, *argv], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def start(self) -> PostgresServer:
        self.dir.mkdir(parents=True)
        if self.user:  # the server's user must own its folder and be able to reach it
            shutil.chown(self.dir, "nobody")
            for parent in self.dir.parents:  # pytest's temporary folders are private (0700)
                if not parent.stat().st_mode & 0o001:
                    parent.chmod(parent.stat().st_mode | 0o001)
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "paradis", "--no-sync", "-E", "UTF8")
        (self.dir / "pg_hba.conf").write_text(HBA)
        options = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.dir), "-o", options, "-l", str(self.dir / "server.log"), "-w", "start")
        self.sql("postgres", f"CREATE ROLE secret LOGIN PASSWORD '{SECRET_PASSWORD}'")
        return self

    def stop(self) -> None:
        if (self.dir / "postmaster.pid").exists():
            subprocess.run([*self.user, "pg_ctl", "-D", str(self.dir), "-m", "immediate", "-w", "stop"], timeout=60)

    def sql(self, database: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.dir), port=self.port, user="paradis", dbname=database) as conn:
            conn.autocommit = True
            conn.execute(statement)

    def database(self, name: str) -> str:
        """A new, empty database; its URL."""
        self.sql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server(folder: Path) -> PostgresServer | None:
    """A started server in `folder`; None where the binaries are missing (a failure under CI)."""
    missing = missing_binaries()
    if missing:
        reason = f"PostgreSQL is not installed here ({', '.join(missing)} not on PATH)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI runs the PostgreSQL tests, install PostgreSQL (initdb, pg_ctl, postgres).")
        return None
    server = PostgresServer(folder)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session", name="postgres")
def postgres_fixture(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("postgres"))
    if server is None:
        pytest.skip(f"PostgreSQL is not installed here ({', '.join(missing_binaries())} not on PATH)")
    try:
        yield server
    finally:
        server.stop()
