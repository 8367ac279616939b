"""A throwaway PostgreSQL server on 127.0.0.1 for the tests: Debian's server binaries,
a fresh cluster from ``initdb`` in a temporary directory, a free port, password
authentication (SCRAM) as a deployment on RDS would use, and durability switched off
because nothing here must survive the test session.

PostgreSQL refuses to run as root, and CI runs as root: the cluster then runs as the
``postgres`` user Debian's package creates (``runuser``). Binaries that are missing
fail the tests with the command that installs them (``scripts/ensure-postgres.sh``);
they are never skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg2
from psycopg2 import sql

from lip_dagster.simulator.processes import free_port

ENSURE = "scripts/ensure-postgres.sh"
REQUIRED = ("initdb", "pg_ctl", "postgres")
TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """The server cannot be started here; the message says how to fix it."""


def server_bindir() -> Path:
    """Where initdb, pg_ctl and postgres live: Debian's newest
    ``/usr/lib/postgresql/<major>/bin``, else the directory of ``initdb`` on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in REQUIRED):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found. "
        f"Run `{ENSURE}` (it installs Debian's postgresql package), then the tests again."
    )


class PostgresServer:
    """One cluster; ``create_database`` hands each test its own database."""

    user = "lip"

    def __init__(self) -> None:
        self.bindir = server_bindir()
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self._as: list[str] = []
        self._owner: str | None = None
        if os.geteuid() == 0:
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "the tests run as root and PostgreSQL refuses to run as root, but there "
                    f"is no 'postgres' user to run it as: run `{ENSURE}`"
                ) from None
            self._as = ["runuser", "-u", "postgres", "--"]
            self._owner = "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="lip-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _run(self, args: Sequence[str]) -> None:
        proc = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[-1500:]}\n{log}"
            )

    def start(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._owner:
            shutil.chown(self.root, self._owner)
            shutil.chown(pwfile, self._owner)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        last: PostgresUnavailable | None = None
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {self.port}",
                    f"-k {self.root}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-w",
                        "-t",
                        "30",
                        "-o",
                        options,
                        "start",
                    ]
                )
                return self
            except PostgresUnavailable as exc:
                last = exc
        raise last or PostgresUnavailable("PostgreSQL did not start")

    def stop(self) -> None:
        if self.data.exists():
            pg_ctl = str(self.bindir / "pg_ctl")
            subprocess.run(
                [*self._as, pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, db: str = "postgres") -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db,
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database, copied from ``template`` when given (a copy of a database
        that already holds Dagster's schema takes a fraction of a second; creating
        the schema takes seconds)."""
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template or "template0")
        )
        deadline = time.monotonic() + 10
        while True:
            conn = self.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(query)
                return name
            except psycopg2.errors.ObjectInUse:
                # the template still has a connection closing: retry, bounded
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                conn.close()

    def query(self, db: str, statement: str, params: Sequence[object] = ()) -> list[tuple]:
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def env(self, db: str) -> dict[str, str]:
        """What a deployment sets for the instance configuration (deploy/ecs/)."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db,
        }
