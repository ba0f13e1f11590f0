"""Where the job store's rows live: one SQLite file (one node), or a PostgreSQL database that
several queues share. One schema and the same statements for both, written once with `:name`
parameters; each backend runs them on its connection and spells the few words in which the two
dialects differ."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ADDED_COLUMNS",
    "DATABASE_NAME",
    "SCHEMA",
    "Database",
    "PostgresDatabase",
    "SQLiteDatabase",
    "open_database",
    "sqlite_url",
]

DATABASE_NAME = "jobs.sqlite3"

# One schema, in each dialect's words for the key, a float and a large integer.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq         {key},                              -- submission order, never reused
    id          TEXT    NOT NULL UNIQUE,
    path        TEXT    NOT NULL,
    language    TEXT    NOT NULL DEFAULT '',
    format      TEXT    NOT NULL,
    output_path TEXT    NOT NULL,
    callback    TEXT    NOT NULL DEFAULT '',
    model       TEXT    NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 1000,
    status      TEXT    NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED')),
    progress    INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result      TEXT    NOT NULL DEFAULT '',
    error       TEXT    NOT NULL DEFAULT '',
    outputs     TEXT    NOT NULL DEFAULT '[]',      -- JSON array of the paths written
    duration    {real}  NOT NULL DEFAULT 0,         -- seconds the job ran
    attempts    INTEGER NOT NULL DEFAULT 0,         -- times it was claimed
    created_at  {real}  NOT NULL,                   -- Unix seconds
    started_at  {real},
    finished_at {real},
    callback_error TEXT NOT NULL DEFAULT '',        -- why the callback was not delivered
    lease_expires_at {real},                        -- RUNNING: taken back after this (Unix seconds)
    stage       TEXT    NOT NULL DEFAULT ''         -- RUNNING: 'downloading model' or 'transcribing'
);
CREATE INDEX IF NOT EXISTS jobs_in_queue_order ON jobs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at);
-- Finished jobs ever, purged ones included: GET /stats's Processed.
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value {big} NOT NULL);
INSERT INTO counters (name, value) VALUES ('processed', 0) ON CONFLICT DO NOTHING;
-- The callbacks still to deliver, one for each job that ended with a callback to make.
CREATE TABLE IF NOT EXISTS callbacks (
    job_id      TEXT    NOT NULL PRIMARY KEY,
    url         TEXT    NOT NULL,
    body        TEXT    NOT NULL,                   -- the job's JSON as it ended: every try sends it
    tries       INTEGER NOT NULL DEFAULT 0,         -- tries made so far
    next_try_at {real}  NOT NULL,                   -- Unix seconds
    held_until  {real}                              -- a queue is sending it: free again after this
);
CREATE INDEX IF NOT EXISTS callbacks_by_next_try ON callbacks (next_try_at)
"""

# The columns later schemas added, for ALTER TABLE on a database of an earlier one:
# callback_error came with schema 2, the lease with schema 3, the stage with schema 4.
ADDED_COLUMNS = {"callback_error": "TEXT NOT NULL DEFAULT ''", "lease_expires_at": "{real}", "stage": "TEXT NOT NULL DEFAULT ''"}

SCHEMA = _SCHEMA.format(key="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", big="INTEGER")
"""The schema in SQLite's words."""


def sqlite_url(folder: str | os.PathLike[str]) -> str:
    """The URL of the SQLite file a JobStore keeps in `folder`."""
    return "sqlite:///" + quote(str(Path(folder) / DATABASE_NAME))


class SQLiteDatabase:
    shared = False  # one node: the queue that opens the file owns every job in it
    greatest = "MAX"
    lock_rows = ""  # BEGIN IMMEDIATE has the whole database already
    skip_locked = ""
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.location = str(path)
        self.schema = SCHEMA
        self.real = "REAL"
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            self._db.close()
            raise RuntimeError(f"{path}: SQLite cannot use WAL mode there ({mode}); put the job store on a local disk")
        self._db.execute("PRAGMA synchronous = FULL")

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return self._db.execute(sql, params or {})

    @contextmanager
    def transaction(self, write: bool) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        return self.execute("PRAGMA user_version").fetchone()[0]

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def columns(self) -> set[str]:
        return {row["name"] for row in self.execute("PRAGMA table_info(jobs)")}

    def close(self) -> None:
        self._db.close()


@cache
def _pyformat(sql: str) -> str:
    """`:name` parameters as psycopg's `%(name)s` (and a literal % doubled)."""
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql.replace("%", "%%"))


class PostgresDatabase:
    shared = True  # other replicas may be running the jobs they claimed
    greatest = "GREATEST"
    lock_rows = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    # Serializes the schema's creation and upgrade by replicas starting at once.
    _SCHEMA_LOCK = 0x77685F6A6F6273  # "wh_jobs"
    # A connection idle this long is checked before it is used: the server may have restarted.
    CHECK_AFTER_IDLE_S = 10.0

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg.rows import dict_row

        self._psycopg = psycopg
        self.integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
        self.path = None
        self.url = url
        self.location = _without_password(url)
        self.schema = _SCHEMA.format(key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real="DOUBLE PRECISION", big="BIGINT")
        self.real = "DOUBLE PRECISION"
        given = conninfo_to_dict(url)
        self._options: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        self._options |= {
            name: value for name, value in (("connect_timeout", 10), ("application_name", "whisper-serve")) if name not in given
        }
        self._db = psycopg.connect(url, **self._options)
        self._used = time.monotonic()

    def _connection(self) -> Any:
        """The connection, opened again if it broke (the server restarted, the network cut it).
        One idle for a while is checked first, so that a restart while the queue was quiet
        fails no call; one that breaks in use fails that call, and the next goes through."""
        if not self._db.broken and time.monotonic() - self._used > self.CHECK_AFTER_IDLE_S:
            try:
                self._db.execute("SELECT 1")
            except self._psycopg.OperationalError:
                pass  # now broken
        if self._db.broken:
            self._db.close()
            self._db = self._psycopg.connect(self.url, **self._options)
        self._used = time.monotonic()
        return self._db

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return self._db.execute(_pyformat(sql), params) if params else self._db.execute(sql)

    @contextmanager
    def transaction(self, write: bool) -> Iterator[None]:
        with self._connection().transaction():
            if not write:  # the listing's three reads see one moment
                self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def schema_version(self) -> int:
        self.execute("SELECT pg_advisory_xact_lock(:key)", {"key": self._SCHEMA_LOCK})
        self.execute("CREATE TABLE IF NOT EXISTS job_store_schema (version INTEGER NOT NULL)")
        row = self.execute("SELECT MAX(version) AS version FROM job_store_schema").fetchone()
        return row["version"] or 0

    def set_schema_version(self, version: int) -> None:
        self.execute("DELETE FROM job_store_schema")
        self.execute("INSERT INTO job_store_schema (version) VALUES (:version)", {"version": version})

    def columns(self) -> set[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'jobs'"
        )
        return {row["column_name"] for row in rows}

    def close(self) -> None:
        self._db.close()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}")
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.geturl())


def open_database(location: str | os.PathLike[str]) -> SQLiteDatabase | PostgresDatabase:
    text = os.fspath(location)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresDatabase(text)
    if scheme == "sqlite":
        path = unquote(urlsplit(text).path)
        if not text.startswith("sqlite:///") or path in ("/", ""):
            raise ValueError(f"a SQLite job store URL names its file: sqlite:////absolute/path/{DATABASE_NAME}, not {text!r}")
        return SQLiteDatabase(Path(path[1:]).expanduser())  # sqlite:///relative, sqlite:////absolute
    if scheme:
        raise ValueError(f"the job store must be a sqlite:/// or postgresql:// URL, or a folder, not {scheme}://...")
    return SQLiteDatabase(Path(text) / DATABASE_NAME)


Database = SQLiteDatabase | PostgresDatabase
