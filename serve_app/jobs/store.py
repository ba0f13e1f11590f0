"""The durable job queue: one SQLite file, or a PostgreSQL database that several queues share,
so that no job is lost and none completes twice.

Where the jobs live is a URL (AppSettings.job_store_url):

- `sqlite:///path/to/jobs.sqlite3` (four slashes for an absolute path), or a folder, which
  holds `jobs.sqlite3`: embedded, for one node. Every change is one transaction taken with
  `BEGIN IMMEDIATE` (the write lock first, so two claimers never read the same QUEUED row)
  and flushed to disk before the call returns (WAL, `synchronous=FULL`). The file needs a
  local disk: WAL mode relies on shared memory, which network file systems (NFS, SMB) do not
  give.
- `postgresql://user@host:port/database` (libpq's URL: `?sslmode=require`, the password from
  PGPASSWORD or ~/.pgpass, `?options=-csearch_path%3Dname` for a schema of its own): for a
  cluster, where JobQueue replicas on several nodes share one queue. A claim takes its row
  with `SELECT ... FOR UPDATE SKIP LOCKED`, so two replicas never claim one job and neither
  waits for the other.

Both hold the same tables and run the same statements, but for the few words in which the
two dialects differ (serve_app/jobs/databases.py). A job whose submission returned survives a
crash of the process or the machine. One connection serves every thread of a JobStore behind a
lock.

A job moves QUEUED -> RUNNING (claim_next) -> COMPLETED or FAILED, or back to QUEUED when
the process that ran it died (recover_after_restart, requeue, or its lease lapsing). Every
move out of RUNNING is a guarded UPDATE: it happens only if the job is still RUNNING (and,
given `attempt`, still in that attempt), and the caller learns whether it did, so a late
result of a run that was given up never overwrites the run that replaced it.

A claim holds a lease of `lease_s` seconds, which the replica running the job keeps renewing
(renew, set_progress; serve_app/jobs/lease.py does it while a job runs). A replica that dies
or hangs stops renewing; once the lease has lapsed, claim_next(max_attempts=...) on any
replica puts the job back in its place in the queue (counted as an attempt when claimed
again), or fails it once it has had `max_attempts` tries. Leases are read against each
replica's clock: keep the nodes' clocks in step (NTP), far closer than `lease_s`.

A job that ends with a callback to make leaves a pending callback in the same transaction (the
`callbacks` table: the body to send, the tries made, when to try next). The scheduler's
delivery loop takes the due ones (claim_callbacks, held for a while so that no other queue
sends the same one meanwhile), sends each once and records the try (callback_tried): delivered
or given up, the row goes and the job's `callback_error` says how it went; else it waits for
its next try. So callbacks, and their retries, survive a restart as the jobs do.

Schema 4 (callbacks, the job's `stage`, and priorities counted from 1000 when none is named):
a database of an earlier schema is upgraded when opened, its priorities raised by 1000 so that
the jobs it holds keep their order among themselves and beside new ones (its ordinary jobs had
0, new ones have 1000).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_app.errors import Conflict, NotFound
from serve_app.jobs.databases import ADDED_COLUMNS, DATABASE_NAME, SCHEMA, Database, open_database, sqlite_url
from serve_app.jobs.job import DEFAULT_PRIORITY, MAX_PRIORITY, Job, JobStatus, callback_body

__all__ = [
    "DATABASE_NAME",
    "DEFAULT_LEASE_S",
    "FINISHED_IN_LISTING",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Backlog",
    "JobStore",
    "PendingCallback",
    "Recovery",
    "sqlite_url",
]

FINISHED_IN_LISTING = 10
SCHEMA_VERSION = 4
DEFAULT_LEASE_S = 60.0

_COLUMNS = (
    "id, path, language, format, output_path, callback, model, priority, status, progress, result,"
    " error, outputs, duration, attempts, created_at, started_at, finished_at, callback_error, stage"
)

_LAPSED = "the replica that ran the job stopped renewing its lease (it died, hung or lost the database)"


def _job(row: Any) -> Job:
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
        stage=row["stage"],
    )


def _attempt_guard(attempt: int | None) -> tuple[str, dict[str, Any]]:
    return ("", {}) if attempt is None else (" AND attempts = :attempt", {"attempt": attempt})


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A callback still to deliver: where, the exact bytes, the tries made and when the next is due."""

    job_id: str
    url: str
    body: bytes
    tries: int
    next_try_at: float


@dataclass(slots=True)
class Recovery:
    """What recover_after_restart (or a claim that took back lapsed leases) did: the jobs
    queued again, and those that ran out of tries (FAILED now: their callbacks are due)."""

    requeued: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Backlog:
    """The queue as the metrics show it: jobs waiting and running, and the age of the oldest
    job still waiting (0 when none waits)."""

    queued: int
    running: int
    oldest_queued_s: float


class JobStore:
    """The jobs, at `location`: a `sqlite:///` or `postgresql://` URL, or a folder that holds
    jobs.sqlite3 (created if missing); see the module's doc.

    Finished jobs stay readable by id for `retention_days` after they finished (None: for
    ever); purge_expired drops older ones, at open and on every submit. A claim holds its job
    for `lease_s` seconds unless renewed. `clock` gives the time in Unix seconds (tests move it).
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        retention_days: float | None = 30,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if retention_days is not None and retention_days < 0:
            raise ValueError(f"retention_days must be 0 or more, not {retention_days}")
        if not lease_s > 0:
            raise ValueError(f"lease_s must be more than 0, not {lease_s}")
        self.retention_days = retention_days
        self.lease_s = lease_s
        self._clock = clock
        self._lock = threading.RLock()
        self._db = open_database(location)
        self.path: Path | None = self._db.path
        """The SQLite file; None on PostgreSQL."""
        self.location = self._db.location
        """Where the jobs are, to show (a PostgreSQL URL without its password)."""
        try:
            self._create_schema()
            self.purge_expired()
        except BaseException:
            self._db.close()
            raise

    @property
    def shared(self) -> bool:
        """Whether other queues may use this store at once (PostgreSQL): then a queue that
        starts must not call recover_after_restart, and leases bring back the jobs of the
        replicas that died."""
        return self._db.shared

    def _create_schema(self) -> None:
        with self._transaction() as db:
            version = db.schema_version()
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the job store {self.location} was written by a newer whisper-serve (schema {version}); upgrade this one"
                )
            existing = bool(db.columns())
            for statement in db.schema.split(";"):
                if statement.strip():
                    db.execute(statement)
            missing = ADDED_COLUMNS.keys() - db.columns()
            for name in sorted(missing):  # a database of an earlier schema
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {ADDED_COLUMNS[name].format(real=db.real)}")
            if existing and version < 4:
                # Up to schema 3 a job naming no priority had 0; since, it has 1000 (ai-api's rule).
                # Every job moves up by as much: the queue keeps its order, and beside new jobs an
                # old ordinary one is ordinary, an old urgent one (5) still urgent (1005).
                db.execute(
                    "UPDATE jobs SET priority = CASE WHEN priority > :top THEN :most ELSE priority + :shift END",
                    {"top": MAX_PRIORITY - DEFAULT_PRIORITY, "most": MAX_PRIORITY, "shift": DEFAULT_PRIORITY},
                )
            if version != SCHEMA_VERSION:
                db.set_schema_version(SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Database]:
        with self._lock, self._db.transaction(write):
            yield self._db

    def _count_finished(self, db: Database, rows: Sequence[Any]) -> list[Job]:
        """The jobs that have just ended, counted, their callbacks made pending, due now."""
        if rows:
            db.execute("UPDATE counters SET value = value + :count WHERE name = 'processed'", {"count": len(rows)})
        finished = [_job(row) for row in rows]
        now = self._clock()
        for job in finished:
            if job.callback:
                db.execute(
                    "INSERT INTO callbacks (job_id, url, body, next_try_at) VALUES (:id, :url, :body, :now)"
                    " ON CONFLICT (job_id) DO NOTHING",
                    {"id": job.id, "url": job.callback, "body": callback_body(job).decode(), "now": now},
                )
        return finished

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
                    " VALUES (:id, :path, :language, :format, :output_path, :callback, :model, :priority, 'QUEUED', :created_at)",
                    {
                        "id": stored.id,
                        "path": stored.path,
                        "language": stored.language,
                        "format": stored.format,
                        "output_path": stored.output_path,
                        "callback": stored.callback,
                        "model": stored.model,
                        "priority": stored.priority,
                        "created_at": stored.created_at,
                    },
                )
        except self._db.integrity_errors:
            raise Conflict(f"a job with id {job.id} exists already") from None
        return stored

    def claim_next(self, *, max_attempts: int | None = None, recovery: Recovery | None = None) -> Job | None:
        """The next QUEUED job (highest priority, then first submitted), now RUNNING with one
        more attempt and a lease of `lease_s` seconds; None when the queue is empty. Never
        hands one job to two callers, of this store or of any other on the same database.

        Given `max_attempts`, it first takes back the RUNNING jobs whose lease lapsed: they go
        back to their place in the queue, or end FAILED once tried `max_attempts` times. Pass
        a `recovery` to learn which: its `failed` jobs' callbacks are due.
        """
        now, taken_back = self._clock(), Recovery()
        with self._transaction() as db:
            if max_attempts is not None:
                taken_back = self._release_in(
                    db,
                    "(lease_expires_at IS NULL OR lease_expires_at < :lapsed_before)",
                    {"lapsed_before": now},
                    _LAPSED,
                    max_attempts,
                    0.0,
                    lock=db.skip_locked,  # a row being renewed right now is not lapsed
                )
            rows = db.execute(
                "UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, started_at = :now, progress = 0,"
                " lease_expires_at = :until, stage = 'transcribing'"
                " WHERE seq = (SELECT seq FROM jobs WHERE status = 'QUEUED' ORDER BY priority DESC, seq LIMIT 1"
                f"{db.skip_locked}) RETURNING {_COLUMNS}",
                {"now": now, "until": now + self.lease_s},
            ).fetchall()
        if recovery is not None:  # once committed: a claim that failed took nothing back
            recovery.requeued += taken_back.requeued
            recovery.failed += taken_back.failed
        return _job(rows[0]) if rows else None

    def renew(self, job_id: str, attempt: int | None = None) -> bool:
        """Extend a RUNNING job's lease to `lease_s` seconds from now: the heartbeat of the
        replica running it. False when the job is no longer RUNNING (in that attempt): it
        finished, or its lease lapsed and another replica took it back."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET lease_expires_at = :until WHERE id = :id AND status = 'RUNNING'{guard}",
                {"id": job_id, "until": self._clock() + self.lease_s, **params},
            )
        return cursor.rowcount == 1

    def set_progress(self, job_id: str, percent: float, *, attempt: int | None = None) -> bool:
        """Record how far a RUNNING job is (clamped to 0-100, never going back), renewing its
        lease; False when the job is not RUNNING (in that attempt)."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET progress = {db.greatest}(progress, :progress), lease_expires_at = :until"
                f" WHERE id = :id AND status = 'RUNNING'{guard}",
                {
                    "id": job_id,
                    "progress": max(0, min(100, int(percent))),
                    "until": self._clock() + self.lease_s,
                    **params,
                },
            )
        return cursor.rowcount == 1

    def complete(
        self,
        job_id: str,
        result: str,
        outputs: Sequence[str | os.PathLike[str]],
        duration: float,
        *,
        attempt: int | None = None,
        language: str = "",
    ) -> Job | None:
        """Mark a RUNNING job COMPLETED with its text and files, and the `language` its transcript
        is in (the detected one, where the job named none; "" leaves the job's as it is); the
        finished job (its callback is now pending), or None when it was not RUNNING (in that
        attempt) and nothing was changed."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE jobs SET status = 'COMPLETED', progress = 100, result = :result, outputs = :outputs,"
                " error = '', duration = :duration, finished_at = :now, lease_expires_at = NULL, stage = '',"
                " language = CASE WHEN :language = '' THEN language ELSE :language END"
                f" WHERE id = :id AND status = 'RUNNING'{guard} RETURNING {_COLUMNS}",
                {
                    "id": job_id,
                    "result": result,
                    "outputs": json.dumps([os.fspath(p) for p in outputs]),
                    "duration": duration,
                    "now": self._clock(),
                    "language": language,
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
                "UPDATE jobs SET status = 'FAILED', error = :reason, duration = :duration, finished_at = :now,"
                f" lease_expires_at = NULL, stage = '' WHERE id = :id AND status = 'RUNNING'{guard} RETURNING {_COLUMNS}",
                {"id": job_id, "reason": reason, "duration": duration, "now": self._clock(), **params},
            ).fetchall()
            finished = self._count_finished(db, rows)
        return finished[0] if finished else None

    def record_callback(self, job_id: str, error: str) -> bool:
        """Record how a finished job's callback went: `error` is why it was not delivered, ""
        when it was. False when the job is unknown or not finished."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET callback_error = :error WHERE id = :id AND status IN ('COMPLETED', 'FAILED')",
                {"error": error, "id": job_id},
            )
        return cursor.rowcount == 1

    def set_stage(self, job_id: str, stage: str, *, attempt: int | None = None) -> bool:
        """Record what a RUNNING job is doing (models.DOWNLOADING, models.TRANSCRIBING), renewing
        its lease; False when the job is not RUNNING (in that attempt)."""
        guard, params = _attempt_guard(attempt)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET stage = :stage, lease_expires_at = :until WHERE id = :id AND status = 'RUNNING'{guard}",
                {"id": job_id, "stage": stage, "until": self._clock() + self.lease_s, **params},
            )
        return cursor.rowcount == 1

    # Pending callbacks: made by the job's end (complete, fail, a release that gives up), sent
    # and recorded by the scheduler's delivery loop.

    def claim_callbacks(self, limit: int, hold_s: float) -> list[PendingCallback]:
        """Up to `limit` pending callbacks whose next try is due, earliest first, held for
        `hold_s` seconds: no other caller, of this store or another on the same database, is
        given them until callback_tried records the try or the hold lapses (the sender died)."""
        now = self._clock()
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE callbacks SET held_until = :until WHERE job_id IN (SELECT job_id FROM callbacks"
                " WHERE next_try_at <= :now AND (held_until IS NULL OR held_until < :now)"
                f" ORDER BY next_try_at LIMIT :limit{db.skip_locked})"
                " RETURNING job_id, url, body, tries, next_try_at",
                {"now": now, "until": now + hold_s, "limit": limit},
            ).fetchall()
        pending = [
            PendingCallback(row["job_id"], row["url"], row["body"].encode(), row["tries"], row["next_try_at"]) for row in rows
        ]
        return sorted(pending, key=lambda callback: callback.next_try_at)

    def callback_tried(self, job_id: str, *, error: str, retry_in: float | None = None) -> None:
        """Record a try of a pending callback. Given `retry_in`, it failed and is tried again that
        many seconds from now. Otherwise it is over, and the job's `callback_error` says how: ""
        delivered, else why not."""
        with self._transaction() as db:
            if retry_in is not None:
                db.execute(
                    "UPDATE callbacks SET tries = tries + 1, next_try_at = :next, held_until = NULL WHERE job_id = :id",
                    {"id": job_id, "next": self._clock() + retry_in},
                )
                return
            db.execute("DELETE FROM callbacks WHERE job_id = :id", {"id": job_id})
            db.execute("UPDATE jobs SET callback_error = :error WHERE id = :id", {"id": job_id, "error": error})

    def pending_callbacks(self) -> list[PendingCallback]:
        """Every callback still to deliver, the next due first."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT job_id, url, body, tries, next_try_at FROM callbacks ORDER BY next_try_at, job_id"
            ).fetchall()
        return [
            PendingCallback(row["job_id"], row["url"], row["body"].encode(), row["tries"], row["next_try_at"]) for row in rows
        ]

    def next_callback_in(self) -> float | None:
        """Seconds until the next pending callback not held by a sender is due (0 if one is
        due now); None when there is none."""
        now = self._clock()
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT MIN(next_try_at) AS next FROM callbacks WHERE held_until IS NULL OR held_until < :now", {"now": now}
            ).fetchone()
        return None if row["next"] is None else max(0.0, row["next"] - now)

    def release_callbacks(self) -> int:
        """Free the callbacks held by a sender that died: on a store of this queue alone, at
        start (as recover_after_restart for the jobs). How many were held."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE callbacks SET held_until = NULL WHERE held_until IS NOT NULL")
        return cursor.rowcount

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

        Call it once when the queue starts, before any job is claimed, and only on a store that
        this queue alone uses (not `shared`): it takes every RUNNING job as orphaned. On a
        shared store, claim_next(max_attempts=...) takes back the jobs whose lease lapsed.
        """
        return self._release("1 = 1", {}, "the service stopped while the job ran", max_attempts, 0.0)

    def _release(self, where: str, params: dict[str, Any], reason: str, max_attempts: int, duration: float) -> Recovery:
        with self._transaction() as db:
            return self._release_in(db, where, params, reason, max_attempts, duration, lock=db.lock_rows)

    def _release_in(
        self,
        db: Database,
        where: str,
        params: dict[str, Any],
        reason: str,
        max_attempts: int,
        duration: float,
        *,
        lock: str,
    ) -> Recovery:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, not {max_attempts}")
        params = params | {"reason": reason, "max_attempts": max_attempts, "duration": duration, "now": self._clock()}
        chosen = f"seq IN (SELECT seq FROM jobs WHERE status = 'RUNNING' AND {where}{lock})"
        requeued = db.execute(
            "UPDATE jobs SET status = 'QUEUED', progress = 0, started_at = NULL, lease_expires_at = NULL, stage = '',"
            " error = :reason"
            f" WHERE {chosen} AND attempts < :max_attempts RETURNING {_COLUMNS}",
            params,
        ).fetchall()
        failed = db.execute(
            "UPDATE jobs SET status = 'FAILED', duration = :duration, finished_at = :now, lease_expires_at = NULL,"
            " stage = '', error = CAST(:reason AS TEXT) || '; gave up after ' || CAST(attempts AS TEXT)"
            " || (CASE attempts WHEN 1 THEN ' try' ELSE ' tries' END)"
            f" WHERE {chosen} AND attempts >= :max_attempts RETURNING {_COLUMNS}",
            params,
        ).fetchall()
        return Recovery(requeued=[_job(row) for row in requeued], failed=self._count_finished(db, failed))

    # What users ask for: one job, the list, the counts; and removal.

    def get(self, job_id: str) -> Job:
        """The job, or NotFound."""
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = :id", {"id": job_id}).fetchone()
        if row is None:
            raise NotFound(self._not_found(job_id))
        return _job(row)

    def _not_found(self, job_id: str) -> str:
        kept = "" if self.retention_days is None else f", or finished more than {self.retention_days:g} days ago"
        return f"job {job_id} not found: no job has this id (it was never submitted, was deleted{kept})"

    def delete_queued(self, job_id: str) -> Job:
        """Remove a QUEUED job and return it; Conflict when it is RUNNING or finished, NotFound when unknown."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = :id{db.lock_rows}", {"id": job_id}).fetchone()
            if row is None:
                raise NotFound(self._not_found(job_id))
            if row["status"] != JobStatus.QUEUED:
                raise Conflict(f"job {job_id} is {row['status']}: only queued jobs can be deleted")
            db.execute("DELETE FROM jobs WHERE id = :id AND status = 'QUEUED'", {"id": job_id})
        return _job(row)

    def listing(self, finished: int = FINISHED_IN_LISTING) -> list[Job]:
        """GET /transcription/jobs: the queued jobs in the order they will run, then the
        running ones (longest running first), then the last `finished` finished ones, newest first."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'QUEUED' ORDER BY priority DESC, seq").fetchall()
            rows += db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'RUNNING' ORDER BY started_at, seq").fetchall()
            rows += db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN ('COMPLETED', 'FAILED')"
                " ORDER BY finished_at DESC, seq DESC LIMIT :finished",
                {"finished": finished},
            ).fetchall()
        return [_job(row) for row in rows]

    def stats(self) -> dict[str, int]:
        """GET /stats: jobs queued, running, and finished (COMPLETED or FAILED) since the
        store was created, purged ones included."""
        with self._transaction(write=False) as db:
            counts = db.execute(
                "SELECT COALESCE(SUM(CASE WHEN status = 'QUEUED' THEN 1 ELSE 0 END), 0) AS queued,"
                " COALESCE(SUM(CASE WHEN status = 'RUNNING' THEN 1 ELSE 0 END), 0) AS running FROM jobs"
            ).fetchone()
            processed = db.execute("SELECT value FROM counters WHERE name = 'processed'").fetchone()
        return {"Queued": int(counts["queued"]), "Running": int(counts["running"]), "Processed": int(processed["value"])}

    def backlog(self) -> Backlog:
        """Jobs queued and running, and how long ago the oldest queued one was submitted."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT status, COUNT(*) AS jobs, MIN(created_at) AS oldest FROM jobs"
                " WHERE status IN ('QUEUED', 'RUNNING') GROUP BY status"
            ).fetchall()
        found = {row["status"]: row for row in rows}
        queued, running = found.get("QUEUED"), found.get("RUNNING")
        return Backlog(
            queued=int(queued["jobs"]) if queued else 0,
            running=int(running["jobs"]) if running else 0,
            oldest_queued_s=max(0.0, self._clock() - float(queued["oldest"])) if queued else 0.0,
        )

    def purge_expired(self) -> int:
        """Drop the jobs that finished more than `retention_days` ago; how many were dropped."""
        if self.retention_days is None:
            return 0
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < :cutoff",
                {"cutoff": self._clock() - self.retention_days * 86400},
            )
            if cursor.rowcount:
                db.execute("DELETE FROM callbacks WHERE job_id NOT IN (SELECT id FROM jobs)")
        return cursor.rowcount
