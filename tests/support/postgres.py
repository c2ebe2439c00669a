"""A private PostgreSQL server for tests and benchmarks: own temp dir, own free port, own socket dir.

Debian's `postgresql` package (installed by `scripts/system-deps.sh`) provides the binaries in
/usr/lib/postgresql/<version>/bin; the system-wide cluster is never used or started. `initdb` refuses to
run as root (CI runs as root), so as root the server runs as the `postgres` system user (`runuser -u
postgres --`) on a temp dir it owns; as any other user it runs as that user.

`fsync` and `synchronous_commit` stay ON: durability is what the store tests are about. Each test gets a
fresh database (`create_database`); `stop()` / `start()` keep the port and the data directory, so a test
can take the server away and give it back (the engine's "PostgreSQL restarted" story).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

START_TIMEOUT = 60.0
"""Seconds to wait for the server to accept connections (a cold start takes ~1 s here)."""
SUPERUSER = "yonglink"
"""The bootstrap superuser initdb creates; tests connect as it over TCP with `trust` on loopback only."""


class PostgresError(RuntimeError):
    """The private server could not start; the message ends with the server's log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps one per major version)."""
    def major(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresError("PostgreSQL is not installed: run `make system-deps` (Debian package postgresql)")


class PrivatePostgres:
    """One PostgreSQL server on 127.0.0.1:`port`; `dsn(db)` names a database on it."""

    def __init__(self, root: Path | None = None, *, settings: dict[str, str] | None = None) -> None:
        self.bin = bin_dir()
        self.root = root or Path(tempfile.mkdtemp(prefix="yonglink-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log_file = self.root / "server.log"
        self.port = free_port()
        self.settings = settings or {}
        self._as: list[str] = []
        self._started = False
        self._initdb()
        atexit.register(self.close)

    # --- setup -------------------------------------------------------------------------------------

    def _initdb(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: the server runs as Debian's postgres user
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.root, 0o700)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockets}'",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "fsync": "on",
            "synchronous_commit": "on",
            "logging_collector": "off",
            **self.settings,
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# yonglink private test server\n")
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it accepts connections (raises PostgresError with its log)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file), "-w",
                   "-t", str(int(START_TIMEOUT)), "start"])
        self._started = True
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.accepting():
                return
            time.sleep(0.05)
        raise PostgresError(f"PostgreSQL did not accept connections on port {self.port}: {self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: clients are disconnected, `immediate`: like a crash)."""
        if self._started:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])
            self._started = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
        except OSError:
            return False
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # --- databases ---------------------------------------------------------------------------------

    def dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its DSN."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        import psycopg

        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
