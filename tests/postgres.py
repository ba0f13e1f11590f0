"""A throwaway PostgreSQL server for the tests: a cluster initdb'd in a temporary folder, listening
on a free port of 127.0.0.1 only, with a password of its own; stopped and removed at the end.

Each test takes a schema of its own (fresh_url), so the tests share one server and never see
each other's tables. As root the server runs as the `postgres` system user (initdb refuses
root), which Debian's postgresql package creates; scripts/setup test installs that package.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from serve_app.local import free_port

__all__ = ["PostgresServer", "server_binaries"]

_USER = "whisper"


def server_binaries() -> Path | None:
    """The folder of initdb and postgres: on PATH, or Debian's /usr/lib/postgresql/<version>/bin
    (newest version first); None when there is none."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    candidates += [Path("/usr/local/pgsql/bin")]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


class PostgresServer:
    """`with PostgresServer(binaries) as server:` a running server; `server.url` its database."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._schemas = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        # initdb and the server refuse to run as root: as root, they run as `postgres`.
        self._as = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        self.folder = Path(tempfile.mkdtemp(prefix="whisper-serve-pg-"))

    @property
    def url(self) -> str:
        return f"postgresql://{_USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def fresh_url(self) -> str:
        """The URL of a new, empty schema: the database as a store of its own would see it."""
        schema = f"test_{next(self._schemas)}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {schema}")
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def __enter__(self) -> PostgresServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()

    def _run(self, *command: str | Path) -> None:
        done = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=300, **self._as)  # type: ignore[call-overload]
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def _start(self) -> None:
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if self._as:
            shutil.chown(password_file, "postgres", "postgres")
        data = self.folder / "data"
        self._run(
            self.binaries / "initdb",
            "--pgdata",
            data,
            "--username",
            _USER,
            "--pwfile",
            password_file,
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        for _ in range(3):  # another process may take the free port first
            self.port = free_port()
            log = open(self.folder / "server.log", "ab")
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                [
                    self.binaries / "postgres",
                    "-D",
                    data,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"port={self.port}",
                    "-c",
                    f"unix_socket_directories={self.folder}",
                    # A test server: speed over durability.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=16MB",
                ],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as,
            )
            log.close()
            if self._wait_ready(timeout=60):
                return
            self._process.wait(timeout=30)
            self._process = None
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{(self.folder / 'server.log').read_text()[-4000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                psycopg.connect(self.url, connect_timeout=5).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        self._process.kill()
        return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown: end the sessions, stop
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self.folder, ignore_errors=True)
