"""The durable job queue: one SQLite file, so that no job is lost and none completes twice.

Every change is one transaction taken with `BEGIN IMMEDIATE` (the write lock first, so two
claimers never read the same QUEUED row) and flushed to disk before the call returns
(WAL, `synchronous=FULL`): a job whose submission returned survives a crash of the process
or the machine. One connection serves every thread of the process behind a lock, and the
SQLite locks keep a second process on the same file consistent too.

The file needs a local disk: WAL mode relies on shared memory, which network file systems
(NFS, SMB) do not give. On a cluster, run the queue where that folder persists.

A job moves QUEUED -> RUNNING (claim_next) -> COMPLETED or FAILED, or back to QUEUED when
the process that ran it died (recover_after_restart, requeue). Every move out of RUNNING is
a guarded UPDATE: it happens only if the job is still RUNNING (and, given `attempt`, still
in that attempt), and the caller learns whether it did, so a late result of a run that was
given up never overwrites the run that replaced it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_app.errors import Conflict, NotFound
from serve_app.jobs.job import Job, JobStatus

__all__ = ["DATABASE_NAME", "FINISHED_IN_LISTING", "SCHEMA", "JobStore", "Recovery"]

DATABASE_NAME = "jobs.sqlite3"
FINISHED_IN_LISTING = 10
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order, never reused
    id          TEXT    NOT NULL UNIQUE,
    path        TEXT    NOT NULL,
    language    TEXT    NOT NULL DEFAULT '',
    format      TEXT    NOT NULL,
    output_path TEXT    NOT NULL,
    callback    TEXT    NOT NULL DEFAULT '',
    model       TEXT    NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED')),
    progress    INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result      TEXT    NOT NULL DEFAULT '',
    error       TEXT    NOT NULL DEFAULT '',
    outputs     TEXT    NOT NULL DEFAULT '[]',      -- JSON array of the paths written
    duration    REAL    NOT NULL DEFAULT 0,         -- seconds the job ran
    attempts    INTEGER NOT NULL DEFAULT 0,         -- times it was claimed
    created_at  REAL    NOT NULL,                   -- Unix seconds
    started_at  REAL,
    finished_at REAL,
    callback_error TEXT NOT NULL DEFAULT ''             -- why the callback was not delivered
);
CREATE INDEX IF NOT EXISTS jobs_in_queue_order ON jobs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at);
-- Finished jobs ever, purged ones included: GET /stats's Processed.
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('processed', 0);
"""

_COLUMNS = (
    "id, path, language, format, output_path, callback, model, priority, status, progress, result,"
    " error, outputs, duration, attempts, created_at, started_at, finished_at, callback_error"
)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        path=row["path"],
        language=row["language"],
        format=row["format"],
        output_path=row["output_path"],
        callback=row["callback"],
        model=row["model"],
        priority=row["priority"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        result=row["result"],
        error=row["error"],
        outputs=json.loads(row["outputs"]),
        duration=row["duration"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        callback_error=row["callback_error"],
    )


def _attempt_guard(attempt: int | None) -> tuple[str, dict[str, Any]]:
    return ("", {}) if attempt is None else (" AND attempts = :attempt", {"attempt": attempt})


@dataclass(slots=True)
class Recovery:
    """What recover_after_restart did: the jobs queued again, and those that ran out of tries
    (FAILED now: their callbacks are due)."""

    requeued: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)


class JobStore:
    """The jobs, in `folder`/jobs.sqlite3 (the folder is created if missing).

    Finished jobs stay readable by id for `retention_days` after they finished (None: for
    ever); purge_expired drops older ones, at open and on every submit. `clock` gives the
    time in Unix seconds (tests move it).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        retention_days: float | None = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_days is not None and retention_days < 0:
            raise ValueError(f"retention_days must be 0 or more, not {retention_days}")
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / DATABASE_NAME
        self.retention_days = retention_days
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            self._db.close()
            raise RuntimeError(f"{self.path}: SQLite cannot use WAL mode there ({mode}); put the job store on a local disk")
        self._db.execute("PRAGMA synchronous = FULL")
        try:
            self._create_schema()
            self.purge_expired()
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer whisper-serve (schema {version}); upgrade this one")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "callback_error" not in columns:  # a file of schema 1
                db.execute("ALTER TABLE jobs ADD COLUMN callback_error TEXT NOT NULL DEFAULT ''")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute(f"BEGIN {mode}")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _count_finished(self, db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[Job]:
        if rows:
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'processed'", (len(rows),))
        return [_job(row) for row in rows]

    # The queue's life: submit, claim, progress, finish.

    def submit(self, job: Job) -> Job:
        """Store a new job as QUEUED and return it with its `created_at`; Conflict if its id is taken."""
        stored = Job(
            path=job.path,
            output_path=job.output_path,
            model=job.model,
            language=job.language,
            format=job.format,
            callback=job.callback,
            priority=job.priority,
            id=job.id,
            created_at=self._clock(),
        )
        self.purge_expired()
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO jobs (id, path, language, format, output_path, callback, model, priority, status, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'QUEUED', ?)",
                    (
                        stored.id,
                        stored.path,
                        stored.language,
                        stored.format,
                        stored.output_path,
                        stored.callback,
                        stored.model,
                        stored.priority,
                        stored.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"a job with id {job.id} exists already") from None
        return stored

    def claim_next(self) -> Job | None:
        """The next QUEUED job (highest priority, then first submitted), now RUNNING with one
        more attempt; None when the queue is empty. Never hands one job to two callers."""
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, started_at = ?, progress = 0"
                " WHERE seq = (SELECT seq FROM jobs WHERE status = 'QUEUED' ORDER BY priority DESC, seq LIMIT 1)"
                f" RETURNING {_COLUMNS}",
                (self._clock(),),
            ).fetchall()
        return _job(rows[0]) if rows else None

    def set_progress(self, job_id: str, percent: float, *, attempt: int | None = None) -> bool:
        """Record how far a RUNNING job is (clamped to 0-100, never going back); False when
        the job is not RUNNING (in that attempt)."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET progress = MAX(progress, :progress) WHERE id = :id AND status = 'RUNNING'{guard}",
                {"id": job_id, "progress": max(0, min(100, int(percent))), **params},
            )
        return cursor.rowcount == 1

    def complete(
        self, job_id: str, result: str, outputs: Sequence[str | os.PathLike[str]], duration: float, *, attempt: int | None = None
    ) -> Job | None:
        """Mark a RUNNING job COMPLETED with its text and files; the finished job (its callback
        is due), or None when it was not RUNNING (in that attempt) and nothing was changed."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE jobs SET status = 'COMPLETED', progress = 100, result = :result, outputs = :outputs,"
                " error = '', duration = :duration, finished_at = :now"
                f" WHERE id = :id AND status = 'RUNNING'{guard} RETURNING {_COLUMNS}",
                {
                    "id": job_id,
                    "result": result,
                    "outputs": json.dumps([os.fspath(p) for p in outputs]),
                    "duration": duration,
                    "now": self._clock(),
                    **params,
                },
            ).fetchall()
            finished = self._count_finished(db, rows)
        return finished[0] if finished else None

    def fail(self, job_id: str, reason: str, duration: float, *, attempt: int | None = None) -> Job | None:
        """Mark a RUNNING job FAILED with the reason; the finished job, or None as for complete."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE jobs SET status = 'FAILED', error = :reason, duration = :duration, finished_at = :now"
                f" WHERE id = :id AND status = 'RUNNING'{guard} RETURNING {_COLUMNS}",
                {"id": job_id, "reason": reason, "duration": duration, "now": self._clock(), **params},
            ).fetchall()
            finished = self._count_finished(db, rows)
        return finished[0] if finished else None

    def record_callback(self, job_id: str, error: str) -> bool:
        """Record how a finished job's callback went: `error` is why it was not delivered, ""
        when it was. False when the job is unknown or not finished."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET callback_error = ? WHERE id = ? AND status IN ('COMPLETED', 'FAILED')", (error, job_id)
            )
        return cursor.rowcount == 1

    def requeue(
        self, job_id: str, reason: str, *, max_attempts: int, attempt: int | None = None, duration: float = 0.0
    ) -> Job | None:
        """A RUNNING job whose worker died goes back to the queue in its old place, or ends
        FAILED once it has been tried `max_attempts` times; the job after the move (FAILED:
        its callback is due), or None when it was not RUNNING (in that attempt)."""
        guard, params = _attempt_guard(attempt)
        recovery = self._release(f"id = :id{guard}", {"id": job_id, **params}, reason, max_attempts, duration)
        moved = recovery.requeued + recovery.failed
        return moved[0] if moved else None

    def recover_after_restart(self, max_attempts: int) -> Recovery:
        """Put back the jobs left RUNNING by a process that died: QUEUED again in their old
        place, or FAILED with the reason once tried `max_attempts` times.

        Call it once when the queue starts, before any job is claimed: it takes every
        RUNNING job of this file as orphaned.
        """
        return self._release("1", {}, "the service stopped while the job ran", max_attempts, 0.0)

    def _release(self, where: str, params: dict[str, Any], reason: str, max_attempts: int, duration: float) -> Recovery:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, not {max_attempts}")
        params |= {"reason": reason, "max_attempts": max_attempts, "duration": duration, "now": self._clock()}
        with self._transaction() as db:
            requeued = db.execute(
                "UPDATE jobs SET status = 'QUEUED', progress = 0, started_at = NULL, error = :reason"
                f" WHERE status = 'RUNNING' AND attempts < :max_attempts AND {where} RETURNING {_COLUMNS}",
                params,
            ).fetchall()
            failed = db.execute(
                "UPDATE jobs SET status = 'FAILED', duration = :duration, finished_at = :now,"
                " error = :reason || '; gave up after ' || attempts || (CASE attempts WHEN 1 THEN ' try' ELSE ' tries' END)"
                f" WHERE status = 'RUNNING' AND attempts >= :max_attempts AND {where} RETURNING {_COLUMNS}",
                params,
            ).fetchall()
            return Recovery(requeued=[_job(row) for row in requeued], failed=self._count_finished(db, failed))

    # What users ask for: one job, the list, the counts; and removal.

    def get(self, job_id: str) -> Job:
        """The job, or NotFound."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(self._not_found(job_id))
        return _job(row)

    def _not_found(self, job_id: str) -> str:
        kept = "" if self.retention_days is None else f", or finished more than {self.retention_days:g} days ago"
        return f"job {job_id} not found: no job has this id (it was never submitted, was deleted{kept})"

    def delete_queued(self, job_id: str) -> Job:
        """Remove a QUEUED job and return it; Conflict when it is RUNNING or finished, NotFound when unknown."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(self._not_found(job_id))
            if row["status"] != JobStatus.QUEUED:
                raise Conflict(f"job {job_id} is {row['status']}: only queued jobs can be deleted")
            db.execute("DELETE FROM jobs WHERE id = ? AND status = 'QUEUED'", (job_id,))
        return _job(row)

    def listing(self, finished: int = FINISHED_IN_LISTING) -> list[Job]:
        """GET /transcription/jobs: the queued jobs in the order they will run, then the
        running ones (longest running first), then the last `finished` finished ones, newest first."""
        with self._transaction("DEFERRED") as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'QUEUED' ORDER BY priority DESC, seq").fetchall()
            rows += db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'RUNNING' ORDER BY started_at, seq").fetchall()
            rows += db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN ('COMPLETED', 'FAILED')"
                " ORDER BY finished_at DESC, seq DESC LIMIT ?",
                (finished,),
            ).fetchall()
        return [_job(row) for row in rows]

    def stats(self) -> dict[str, int]:
        """GET /stats: jobs queued, running, and finished (COMPLETED or FAILED) since the
        store was created, purged ones included."""
        with self._transaction("DEFERRED") as db:
            queued, running = db.execute(
                "SELECT COALESCE(SUM(status = 'QUEUED'), 0), COALESCE(SUM(status = 'RUNNING'), 0) FROM jobs"
            ).fetchone()
            (processed,) = db.execute("SELECT value FROM counters WHERE name = 'processed'").fetchone()
        return {"Queued": queued, "Running": running, "Processed": processed}

    def purge_expired(self) -> int:
        """Drop the jobs that finished more than `retention_days` ago; how many were dropped."""
        if self.retention_days is None:
            return 0
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?",
                (self._clock() - self.retention_days * 86400,),
            )
        return cursor.rowcount
