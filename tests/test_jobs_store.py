"""The durable queue, on real SQLite files and on a real PostgreSQL server (tests/postgres.py):
order, state changes, restarts, retention, schema upgrades, replicas claiming at once, leases."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from serve_app.errors import Conflict, NotFound
from serve_app.jobs import DEFAULT_PRIORITY, Job, JobStatus, JobStore, Recovery, callback_body
from serve_app.jobs.models import DOWNLOADING, TRANSCRIBING
from serve_app.jobs.store import SCHEMA_VERSION, Backlog, sqlite_url


class Clock:
    """Time that moves only when told to, one second a reading unless set."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


Location = Path | str  # a folder for SQLite, a URL for PostgreSQL


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """Where a test's jobs live: a folder of its own, or a schema of its own on the session's server."""
    if request.param == "sqlite":
        return tmp_path / "jobs"
    return request.getfixturevalue("postgres").fresh_url()


@pytest.fixture
def store(location: Location, clock: Clock) -> Iterator[JobStore]:
    with JobStore(location, retention_days=7, clock=clock) as opened:
        yield opened


def raw(location: Location, *statements: str) -> None:
    """Run SQL on the store's database behind its back."""
    if isinstance(location, Path):
        db = sqlite3.connect(location / "jobs.sqlite3", isolation_level=None)
        try:
            for statement in statements:
                db.execute(statement)
        finally:
            db.close()
    else:
        with psycopg.connect(location, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)  # type: ignore[arg-type]


def set_schema_version(location: Location, version: int) -> None:
    if isinstance(location, Path):
        raw(location, f"PRAGMA user_version = {version}")
    else:
        raw(location, f"UPDATE job_store_schema SET version = {version}")


def new_job(name: str = "a", *, priority: int = DEFAULT_PRIORITY, callback: str = "") -> Job:
    return Job(path=f"/data/media/{name}.mp3", output_path="/data/out", model="tiny.en", priority=priority, callback=callback)


def submit(store: JobStore, *names: str, priority: int = DEFAULT_PRIORITY) -> list[Job]:
    return [store.submit(new_job(name, priority=priority)) for name in names]


def names(jobs: list[Job]) -> list[str]:
    return [Path(job.path).stem for job in jobs]


def claim(store: JobStore) -> Job:
    job = store.claim_next()
    assert job is not None
    return job


def test_a_submitted_job_is_queued_and_readable(store: JobStore) -> None:
    (job,) = submit(store, "a")
    stored = store.get(job.id)
    assert stored == job
    assert (stored.status, stored.progress, stored.attempts, stored.started_at) == (JobStatus.QUEUED, 0, 0, None)
    assert stored.created_at > 0


def test_an_unknown_id_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound, match="job nope not found"):
        store.get("nope")


def test_the_file_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        assert store.path == tmp_path / "jobs.sqlite3"
        assert not store.shared
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_sqlite_url_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with JobStore(tmp_path / "by-folder") as by_folder:
        submit(by_folder, "a")
    url = sqlite_url(tmp_path / "by-folder")
    assert url == f"sqlite:///{tmp_path}/by-folder/jobs.sqlite3" and url.startswith("sqlite:////")
    with JobStore(url) as by_url:
        assert names(by_url.listing()) == ["a"]
        assert by_url.path == tmp_path / "by-folder" / "jobs.sqlite3"
    monkeypatch.chdir(tmp_path)
    with JobStore("sqlite:///relative/queue.db") as relative:
        assert relative.path is not None and relative.path.resolve() == tmp_path / "relative" / "queue.db"
    for wrong in ("sqlite://host/x.db", "sqlite:///", "mysql://db/jobs"):
        with pytest.raises(ValueError, match="job store"):
            JobStore(wrong)


def test_postgresql_is_shared_and_its_password_is_not_shown(postgres) -> None:
    with JobStore(postgres.fresh_url()) as store:
        assert store.shared and store.path is None
        assert postgres.password not in store.location
        assert store.location.startswith("postgresql://whisper:***@127.0.0.1:")


def test_queued_jobs_survive_closing_and_reopening(location: Location) -> None:
    with JobStore(location) as first:
        submitted = submit(first, "a", "b", "c")
    with JobStore(location) as reopened:
        assert [job.id for job in reopened.listing()] == [job.id for job in submitted]
        assert names([claim(reopened), claim(reopened), claim(reopened)]) == ["a", "b", "c"]


def test_jobs_run_in_submission_order(store: JobStore) -> None:
    submit(store, "a", "b", "c")
    assert names([claim(store), claim(store), claim(store)]) == ["a", "b", "c"]
    assert store.claim_next() is None


def test_a_higher_priority_runs_first_then_submission_order(store: JobStore) -> None:
    # ai-api's rule: no priority is 1000, so an explicitly low one runs after the ordinary jobs.
    submit(store, "ordinary1")
    submit(store, "high1", priority=1005)
    submit(store, "low", priority=100)
    submit(store, "ordinary2")
    submit(store, "urgent", priority=5000)
    submit(store, "high2", priority=1005)
    submit(store, "lowest", priority=1)
    expected = ["urgent", "high1", "high2", "ordinary1", "ordinary2", "low", "lowest"]
    assert names(store.listing()) == expected
    assert names([claim(store) for _ in expected]) == expected


def test_claiming_marks_running_and_counts_attempts(store: JobStore) -> None:
    (job,) = submit(store, "a")
    claimed = claim(store)
    assert claimed.id == job.id
    assert (claimed.status, claimed.attempts) == (JobStatus.RUNNING, 1)
    assert claimed.started_at is not None and claimed.started_at > job.created_at
    assert store.get(job.id) == claimed


def test_progress_is_recorded_only_while_running_and_never_goes_back(store: JobStore) -> None:
    (job,) = submit(store, "a")
    assert not store.set_progress(job.id, 10)
    claim(store)
    assert store.set_progress(job.id, 42.7)
    assert store.get(job.id).progress == 42
    assert store.set_progress(job.id, 30)
    assert store.get(job.id).progress == 42
    store.set_progress(job.id, 250)
    assert store.get(job.id).progress == 100


def test_complete_records_the_result_once(store: JobStore) -> None:
    (job,) = submit(store, "a")
    claim(store)
    done = store.complete(job.id, "Hello there.", [Path("/data/out/a.txt")], 12.5)
    assert done is not None
    assert (done.status, done.result, done.outputs, done.duration, done.progress) == (
        JobStatus.COMPLETED,
        "Hello there.",
        ["/data/out/a.txt"],
        12.5,
        100,
    )
    assert done.finished_at is not None
    assert store.get(job.id) == done
    # A second completion, or a failure after it, changes nothing and says so.
    assert store.complete(job.id, "Other text.", [], 1.0) is None
    assert store.fail(job.id, "late failure", 1.0) is None
    assert store.get(job.id) == done
    assert store.stats()["Processed"] == 1


def test_a_queued_job_cannot_be_completed(store: JobStore) -> None:
    (job,) = submit(store, "a")
    assert store.complete(job.id, "text", [], 1.0) is None
    assert store.complete("unknown", "text", [], 1.0) is None
    assert store.get(job.id).status == JobStatus.QUEUED


def test_fail_records_the_reason(store: JobStore) -> None:
    (job,) = submit(store, "a")
    claim(store)
    failed = store.fail(job.id, "the media has no audio stream", 0.5)
    assert failed is not None
    assert (failed.status, failed.error, failed.duration) == (JobStatus.FAILED, "the media has no audio stream", 0.5)
    assert store.get(job.id) == failed


def test_delete_removes_only_queued_jobs(store: JobStore) -> None:
    queued, running, completed, failed = submit(store, "queued", "running", "completed", "failed")
    store.delete_queued(queued.id)
    with pytest.raises(NotFound):
        store.get(queued.id)
    for job in (running, completed, failed):
        assert claim(store).id == job.id
    store.complete(completed.id, "text", [], 1.0)
    store.fail(failed.id, "broken", 1.0)
    for job, status in ((running, "RUNNING"), (completed, "COMPLETED"), (failed, "FAILED")):
        with pytest.raises(Conflict) as refused:
            store.delete_queued(job.id)
        assert refused.value.status == 409
        assert refused.value.reason == f"job {job.id} is {status}: only queued jobs can be deleted"
        assert store.get(job.id).status == status
    with pytest.raises(NotFound) as unknown:
        store.delete_queued(queued.id)
    assert unknown.value.status == 404


def test_the_listing_is_queued_then_running_then_the_last_ten_finished(store: JobStore) -> None:
    finished = submit(store, *(f"done{i:02d}" for i in range(12)))
    for number, job in enumerate(finished):
        assert claim(store).id == job.id
        if number % 2:
            store.fail(job.id, "broken", 1.0)
        else:
            store.complete(job.id, "text", [], 1.0)
    running = submit(store, "run1", "run2")
    assert [claim(store).id for _ in running] == [job.id for job in running]
    submit(store, "q1")
    submit(store, "q2", priority=1001)
    listing = store.listing()
    assert names(listing) == ["q2", "q1", "run1", "run2"] + [f"done{i:02d}" for i in range(11, 1, -1)]
    assert [job.status for job in listing[:4]] == ["QUEUED", "QUEUED", "RUNNING", "RUNNING"]
    # The two oldest finished jobs are out of the listing, still readable by id.
    assert store.get(finished[0].id).status == JobStatus.COMPLETED


def test_stats_add_up(store: JobStore) -> None:
    assert store.stats() == {"Queued": 0, "Running": 0, "Processed": 0}
    jobs = submit(store, "a", "b", "c", "d", "e")
    assert [claim(store).id for _ in range(3)] == [job.id for job in jobs[:3]]
    store.complete(jobs[0].id, "text", [], 1.0)
    store.fail(jobs[1].id, "broken", 1.0)
    store.delete_queued(jobs[4].id)
    stats = store.stats()
    assert stats == {"Queued": 1, "Running": 1, "Processed": 2}
    assert sum(stats.values()) == len(jobs) - 1


def test_a_job_running_when_the_process_died_runs_again_then_fails(location: Location) -> None:
    first = JobStore(location)
    (job,) = submit(first, "a")
    (other,) = submit(first, "b")
    assert claim(first).id == job.id
    first.set_progress(job.id, 60)
    del first  # the process died mid-job: nothing completed, nothing closed on purpose

    second = JobStore(location)
    recovery = second.recover_after_restart(max_attempts=2)
    assert ([j.id for j in recovery.requeued], recovery.failed) == ([job.id], [])
    again = second.get(job.id)
    assert (again.status, again.progress, again.started_at) == (JobStatus.QUEUED, 0, None)
    assert again.error == "the service stopped while the job ran"
    # It keeps its place ahead of the jobs submitted after it.
    retried = claim(second)
    assert (retried.id, retried.attempts) == (job.id, 2)
    del second

    third = JobStore(location)
    recovery = third.recover_after_restart(max_attempts=2)
    assert recovery.requeued == []
    (failed,) = recovery.failed
    assert (failed.id, failed.status) == (job.id, JobStatus.FAILED)
    assert failed.error == "the service stopped while the job ran; gave up after 2 tries"
    assert third.get(job.id) == failed
    assert third.get(other.id).status == JobStatus.QUEUED
    assert third.stats() == {"Queued": 1, "Running": 0, "Processed": 1}
    third.close()


def test_a_late_result_of_a_given_up_attempt_is_refused(store: JobStore) -> None:
    (job,) = submit(store, "a")
    first = claim(store)
    requeued = store.requeue(job.id, "the replica died", max_attempts=3, attempt=first.attempts)
    assert requeued is not None and requeued.status == JobStatus.QUEUED
    second = claim(store)
    assert second.attempts == 2
    # The first attempt's worker comes back with a result: it must not finish the second run.
    assert store.complete(job.id, "stale", [], 1.0, attempt=first.attempts) is None
    assert not store.set_progress(job.id, 50, attempt=first.attempts)
    done = store.complete(job.id, "fresh", [], 1.0, attempt=second.attempts)
    assert done is not None and done.result == "fresh"


def test_requeue_gives_up_after_the_bound(store: JobStore) -> None:
    (job,) = submit(store, "a")
    claim(store)
    failed = store.requeue(job.id, "the replica died", max_attempts=1, duration=3.0)
    assert failed is not None
    assert (failed.status, failed.error, failed.duration) == (JobStatus.FAILED, "the replica died; gave up after 1 try", 3.0)
    assert store.requeue(job.id, "again", max_attempts=1) is None


def test_finished_jobs_are_purged_after_the_retention(store: JobStore, clock: Clock) -> None:
    old, recent, waiting = submit(store, "old", "recent", "waiting")
    claim(store)
    store.complete(old.id, "text", [], 1.0)
    clock.now += 6 * 86400
    claim(store)
    store.complete(recent.id, "text", [], 1.0)
    assert store.purge_expired() == 0
    assert store.get(old.id).status == JobStatus.COMPLETED
    clock.now += 1.5 * 86400
    submit(store, "new")  # submitting purges, as reopening does
    with pytest.raises(NotFound, match="finished more than 7 days ago"):
        store.get(old.id)
    assert store.get(recent.id).status == JobStatus.COMPLETED
    assert store.get(waiting.id).status == JobStatus.QUEUED
    assert store.stats()["Processed"] == 2


def test_a_job_id_cannot_be_submitted_twice(store: JobStore) -> None:
    (job,) = submit(store, "a")
    with pytest.raises(Conflict):
        store.submit(job)


def test_a_callback_outcome_is_kept_for_finished_jobs_only(store: JobStore) -> None:
    job = store.submit(new_job())
    assert not store.record_callback(job.id, "refused")
    store.claim_next()
    store.fail(job.id, "broken", 1.0)
    assert store.record_callback(job.id, "callback host '10.0.0.5' is a private address")
    assert store.get(job.id).to_json()["callback_error"] == "callback host '10.0.0.5' is a private address"
    assert not store.record_callback("no-such-job", "x")


def test_a_file_of_schema_1_gains_the_callback_error(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        job = store.submit(new_job())
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute("ALTER TABLE jobs DROP COLUMN callback_error")
        db.execute("PRAGMA user_version = 1")
    db.close()
    with JobStore(tmp_path) as store:
        assert store.get(job.id).callback_error == ""
        store.claim_next()
        store.complete(job.id, "text", [], 1.0)
        assert store.record_callback(job.id, "the receiver answered 404")
        assert store.get(job.id).callback_error == "the receiver answered 404"


# The schema as whisper-serve wrote it before leases (schema 2), word for word.
SCHEMA_2 = """
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
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('processed', 0);
"""


def test_a_file_of_schema_2_is_upgraded(tmp_path: Path) -> None:
    now = time.time()
    db = sqlite3.connect(tmp_path / "jobs.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA_2)
    insert = "INSERT INTO jobs (id, path, format, output_path, model, status, attempts, created_at, started_at) VALUES (?, ?, 'txt', '/out', 'tiny.en', ?, ?, ?, ?)"
    db.execute(insert, ("queued", "/m/queued.mp3", "QUEUED", 0, now - 20, None))
    db.execute(insert, ("running", "/m/running.mp3", "RUNNING", 1, now - 10, now - 5))
    db.execute("UPDATE counters SET value = 4 WHERE name = 'processed'")
    db.execute("PRAGMA user_version = 2")
    db.close()

    with JobStore(tmp_path) as store:
        assert store.get("queued").status == JobStatus.QUEUED
        assert store.stats() == {"Queued": 1, "Running": 1, "Processed": 4}
        # A job left RUNNING by the old version has no lease: it counts as lapsed.
        recovery = Recovery()
        taken = store.claim_next(max_attempts=3, recovery=recovery)
        assert [job.id for job in recovery.requeued] == ["running"]
        assert taken is not None and (taken.id, taken.attempts) == ("queued", 1)
        assert store.renew("queued", taken.attempts)
        assert (claim(store).id, store.get("running").attempts) == ("running", 2)
        assert store.get("queued").priority == DEFAULT_PRIORITY  # its 0 was "no priority"
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert {"lease_expires_at", "stage"} <= {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    assert db.execute("SELECT COUNT(*) FROM callbacks").fetchone()[0] == 0
    db.close()


def test_a_database_of_an_earlier_schema_gains_the_lease(location: Location, clock: Clock) -> None:
    with JobStore(location, clock=clock) as store:
        job = store.submit(new_job())
    raw(location, "ALTER TABLE jobs DROP COLUMN lease_expires_at")
    set_schema_version(location, 2)
    with JobStore(location, clock=clock, lease_s=30) as store, JobStore(location, clock=clock, lease_s=30) as other:
        claimed = claim(store)
        assert other.claim_next(max_attempts=2) is None
        clock.now += 31
        assert other.claim_next(max_attempts=2) == store.get(job.id)
        assert not store.renew(job.id, claimed.attempts)
    with JobStore(location) as reopened:  # upgraded once: opening again changes nothing
        assert reopened.get(job.id).attempts == 2


def test_a_database_of_a_newer_schema_is_refused(location: Location) -> None:
    with JobStore(location) as store:
        store.submit(new_job())
    set_schema_version(location, SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match=f"newer whisper-serve \\(schema {SCHEMA_VERSION + 1}\\); upgrade this one"):
        JobStore(location)


def test_two_replicas_claim_50_jobs_concurrently_each_exactly_once(location: Location) -> None:
    with JobStore(location) as first, JobStore(location) as second:
        submitted = {job.id for job in submit(first, *(f"job{i}" for i in range(50)))}
        claimed: dict[str, list[str]] = {"first": [], "second": []}
        lock = threading.Lock()
        start = threading.Barrier(8)
        errors: list[BaseException] = []

        def worker(replica: str, store: JobStore) -> None:
            try:
                start.wait()
                while (job := store.claim_next(max_attempts=3)) is not None:
                    with lock:
                        claimed[replica].append(job.id)
                    time.sleep(0.002)  # the work, during which the other replica claims
                    assert store.complete(job.id, "text", [], 0.1, attempt=job.attempts) is not None
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=replica) for replica in [("first", first), ("second", second)] * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        every = claimed["first"] + claimed["second"]
        assert sorted(every) == sorted(submitted)  # each job once: no job missed, none twice
        assert first.stats() == second.stats() == {"Queued": 0, "Running": 0, "Processed": 50}
        assert {job.attempts for job in first.listing(finished=50)} == {1}


def test_a_claim_skips_a_row_another_transaction_holds(postgres) -> None:
    """On PostgreSQL a claim neither waits for nor takes a row that another replica has locked."""
    url = postgres.fresh_url()
    with JobStore(url) as store:
        held, free = submit(store, "held", "free")
        with psycopg.connect(url) as other:  # a transaction, as a claim of another replica would hold
            other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (held.id,))
            started = time.monotonic()
            assert claim(store).id == free.id
            assert store.claim_next() is None
            assert time.monotonic() - started < 5
        assert claim(store).id == held.id


DROP_CONNECTIONS = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'whisper-serve'"


def test_a_store_reconnects_after_the_server_dropped_its_connection(postgres, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.jobs.databases import PostgresDatabase

    url = postgres.fresh_url()
    with JobStore(url) as store:
        (job,) = submit(store, "a")
        raw(url, DROP_CONNECTIONS)
        with pytest.raises(psycopg.OperationalError):
            store.get(job.id)  # in use a moment ago: the call that finds the connection gone fails
        assert store.get(job.id).status == JobStatus.QUEUED  # the next one opens another
        monkeypatch.setattr(PostgresDatabase, "CHECK_AFTER_IDLE_S", 0.0)
        raw(url, DROP_CONNECTIONS)
        assert claim(store).id == job.id  # idle (long enough): checked first, no call fails
    with pytest.raises(psycopg.OperationalError):
        store.get(job.id)  # closed on purpose: not opened again


# Leases: a replica that stops renewing loses its job to another.


def test_a_lapsed_lease_is_taken_back_by_another_replica(location: Location, clock: Clock) -> None:
    with JobStore(location, clock=clock, lease_s=60) as dead, JobStore(location, clock=clock, lease_s=60) as alive:
        job, later = submit(dead, "a", "b")
        first = claim(dead)
        assert first.id == job.id
        clock.now += 40
        assert dead.renew(job.id, first.attempts)  # the heartbeat
        clock.now += 40
        assert dead.set_progress(job.id, 30, attempt=first.attempts)  # progress renews too
        clock.now += 40
        assert claim(alive).id == later.id  # the lease holds: the other job is next
        alive.complete(later.id, "text", [], 1.0)
        assert alive.claim_next(max_attempts=3) is None
        clock.now += 61  # no heartbeat for longer than the lease: the replica died

        recovery = Recovery()
        taken = alive.claim_next(max_attempts=3, recovery=recovery)
        assert taken is not None
        assert (taken.id, taken.status, taken.attempts, taken.progress) == (job.id, JobStatus.RUNNING, 2, 0)
        assert ([j.id for j in recovery.requeued], recovery.failed) == ([job.id], [])
        assert "stopped renewing its lease" in recovery.requeued[0].error
        # The first replica, back from the dead, can neither renew nor finish the job.
        assert not dead.renew(job.id, first.attempts)
        assert not dead.set_progress(job.id, 90, attempt=first.attempts)
        assert dead.complete(job.id, "stale", [], 1.0, attempt=first.attempts) is None
        done = alive.complete(job.id, "fresh", [], 1.0, attempt=taken.attempts)
        assert done is not None and (done.result, done.error) == ("fresh", "")
        assert not alive.renew(job.id, taken.attempts)  # finished: nothing to renew


def test_a_lapsed_job_goes_back_to_its_place_in_the_queue(location: Location, clock: Clock) -> None:
    with JobStore(location, clock=clock, lease_s=10) as store:
        (urgent,) = submit(store, "urgent", priority=1005)
        assert claim(store).id == urgent.id
        submit(store, "low")
        submit(store, "high", priority=1005)
        clock.now += 11
        assert names(store.listing()) == ["high", "low", "urgent"]
        taken = [store.claim_next(max_attempts=3) for _ in range(3)]
        assert names([job for job in taken if job is not None]) == ["urgent", "high", "low"]


def test_a_claim_without_max_attempts_leaves_lapsed_jobs_alone(store: JobStore, clock: Clock) -> None:
    (job,) = submit(store, "a")
    claim(store)
    clock.now += store.lease_s * 10
    assert store.claim_next() is None
    assert store.get(job.id).status == JobStatus.RUNNING


def test_a_job_whose_lease_keeps_lapsing_fails_after_max_attempts(location: Location, clock: Clock) -> None:
    with JobStore(location, clock=clock, lease_s=5) as one, JobStore(location, clock=clock, lease_s=5) as two:
        (job,) = submit(one, "a")
        assert claim(one).attempts == 1
        clock.now += 6
        assert two.claim_next(max_attempts=2) == two.get(job.id)
        clock.now += 6
        (waiting,) = submit(two, "b")
        recovery = Recovery()
        assert one.claim_next(max_attempts=2, recovery=recovery) == one.get(waiting.id)
        (failed,) = recovery.failed
        assert recovery.requeued == []
        assert (failed.id, failed.status, failed.attempts) == (job.id, JobStatus.FAILED, 2)
        assert failed.error.endswith("stopped renewing its lease (it died, hung or lost the database); gave up after 2 tries")
        assert failed.finished_at is not None and two.get(job.id) == failed
        assert one.stats() == {"Queued": 0, "Running": 1, "Processed": 1}


def test_renew_holds_only_for_the_running_attempt(store: JobStore) -> None:
    (job,) = submit(store, "a")
    assert not store.renew(job.id, 0)  # queued
    assert not store.renew("no-such-job")
    claimed = claim(store)
    assert store.renew(job.id, claimed.attempts) and store.renew(job.id)
    assert not store.renew(job.id, claimed.attempts + 1)
    store.fail(job.id, "broken", 1.0, attempt=claimed.attempts)
    assert not store.renew(job.id, claimed.attempts)


def test_the_lease_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lease_s"):
        JobStore(tmp_path, lease_s=0)


def test_a_database_of_schema_3_keeps_its_queue_order_beside_new_jobs(location: Location) -> None:
    with JobStore(location) as store:
        old = {
            name: store.submit(new_job(name, priority=priority))
            for name, priority in (("ordinary", 0), ("urgent", 5), ("low", -1))
        }
        done = store.submit(new_job("done", priority=10))
        assert claim(store).id == done.id
        store.complete(done.id, "text", [], 1.0)
    # As schema 3 had it: no stage, no callbacks table, 0 for a job without priority.
    raw(location, "ALTER TABLE jobs DROP COLUMN stage", "DROP TABLE callbacks")
    set_schema_version(location, 3)
    with JobStore(location) as store:
        assert {name: store.get(job.id).priority for name, job in old.items()} == {"ordinary": 1000, "urgent": 1005, "low": 999}
        assert store.get(done.id).priority == 1010  # finished jobs move too: one scale for all
        (new,) = submit(store, "new")
        submit(store, "lower", priority=500)
        assert names(store.listing()[:5]) == ["urgent", "ordinary", "new", "low", "lower"]
    with JobStore(location) as store:  # upgraded once: opening again moves nothing
        assert store.get(old["urgent"].id).priority == 1005
        assert store.get(new.id).priority == 1000


def test_a_completed_job_records_the_language_of_its_transcript(store: JobStore) -> None:
    detected, named = (
        store.submit(new_job("detected")),
        store.submit(Job(path="/m/b.mp3", output_path="/o", model="m", language="en")),
    )
    claim(store), claim(store)
    assert store.complete(detected.id, "Hallo.", [], 1.0, language="de").language == "de"
    assert store.get(detected.id).to_json()["language"] == "de"
    assert store.complete(named.id, "Hello.", [], 1.0).language == "en"  # none given: the job's stays


def test_the_stage_of_a_running_job(store: JobStore) -> None:
    (job,) = submit(store, "a")
    assert store.get(job.id).stage == ""
    running = claim(store)
    assert running.stage == TRANSCRIBING
    assert store.set_stage(job.id, DOWNLOADING, attempt=running.attempts)
    assert store.get(job.id).to_json()["stage"] == "downloading model"
    assert not store.set_stage(job.id, DOWNLOADING, attempt=running.attempts + 1)
    store.fail(job.id, "the hub is down", 1.0)
    assert store.get(job.id).stage == ""
    assert not store.set_stage(job.id, TRANSCRIBING)


def finish_with_callback(store: JobStore, name: str = "a", *, fail: bool = False) -> Job:
    job = store.submit(new_job(name, callback=f"http://hooks.example.com/{name}"))
    assert claim(store).id == job.id
    finished = store.fail(job.id, "broken", 1.0) if fail else store.complete(job.id, "text", [], 1.0, language="en")
    assert finished is not None
    return finished


def test_a_job_that_ends_leaves_its_callback_pending(store: JobStore, clock: Clock) -> None:
    (quiet,) = submit(store, "quiet")
    claim(store)
    store.complete(quiet.id, "text", [], 1.0)
    assert store.pending_callbacks() == []  # no callback asked for

    completed = finish_with_callback(store, "completed")
    failed = finish_with_callback(store, "failed", fail=True)
    pending = store.pending_callbacks()
    assert [(p.job_id, p.url, p.tries) for p in pending] == [
        (completed.id, "http://hooks.example.com/completed", 0),
        (failed.id, "http://hooks.example.com/failed", 0),
    ]
    # The body is the job as it ended, byte for byte, whatever happens to the job after.
    assert pending[0].body == callback_body(completed)
    assert b'"status":"FAILED"' in pending[1].body and b'"error":"broken"' in pending[1].body
    assert pending[0].next_try_at <= clock.now and store.next_callback_in() == 0


def test_a_pending_callback_is_held_tried_again_then_over(location: Location, clock: Clock) -> None:
    with JobStore(location, clock=clock) as store, JobStore(location, clock=clock) as other:
        job = finish_with_callback(store)
        (taken,) = store.claim_callbacks(10, hold_s=60)
        assert (taken.job_id, taken.tries) == (job.id, 0)
        assert other.claim_callbacks(10, hold_s=60) == [] and store.next_callback_in() is None  # held
        store.callback_tried(job.id, error="the receiver answered 503", retry_in=30)
        (waiting,) = store.pending_callbacks()
        assert waiting.tries == 1 and 28 <= (store.next_callback_in() or 0) <= 30
        assert other.claim_callbacks(10, hold_s=60) == []  # not due yet
        clock.now += 30
        (again,) = other.claim_callbacks(10, hold_s=60)
        assert (again.job_id, again.tries, again.body) == (job.id, 1, taken.body)
        other.callback_tried(job.id, error="")
        assert store.pending_callbacks() == [] and store.get(job.id).callback_error == ""

        given_up = finish_with_callback(store, "b")
        store.claim_callbacks(10, hold_s=60)
        store.callback_tried(given_up.id, error="the receiver answered 404")
        assert store.pending_callbacks() == []
        assert store.get(given_up.id).callback_error == "the receiver answered 404"


def test_a_pending_callback_survives_a_restart(location: Location, clock: Clock) -> None:
    store = JobStore(location, clock=clock)
    job = finish_with_callback(store)
    store.claim_callbacks(10, hold_s=600)
    store.callback_tried(job.id, error="ConnectError: refused", retry_in=5)
    (before,) = store.pending_callbacks()
    store.claim_callbacks(10, hold_s=600)  # due again later: nothing taken yet
    clock.now += 5
    (held,) = store.claim_callbacks(10, hold_s=600)  # taken, and the process dies mid-try
    del store

    with JobStore(location, clock=clock) as reopened:
        assert reopened.pending_callbacks() == [before]
        assert reopened.claim_callbacks(10, hold_s=600) == []  # held by the dead sender...
        assert reopened.release_callbacks() == 1  # ...until the queue that owns the store starts again
        (after,) = reopened.claim_callbacks(10, hold_s=600)
        assert (after.job_id, after.tries, after.body) == (job.id, 1, held.body)


def test_a_callback_held_by_a_sender_that_died_is_taken_again_once_its_hold_lapses(location: Location, clock: Clock) -> None:
    with JobStore(location, clock=clock) as store, JobStore(location, clock=clock) as other:
        job = finish_with_callback(store)
        assert [p.job_id for p in store.claim_callbacks(10, hold_s=60)] == [job.id]
        clock.now += 61
        assert [p.job_id for p in other.claim_callbacks(10, hold_s=60)] == [job.id]


def test_a_job_given_up_by_a_restart_leaves_its_callback_pending(location: Location) -> None:
    with JobStore(location) as store:
        job = store.submit(new_job("a", callback="http://hooks.example.com/a"))
        claim(store)
    with JobStore(location) as store:
        (failed,) = store.recover_after_restart(max_attempts=1).failed
        (pending,) = store.pending_callbacks()
        assert pending.job_id == job.id and pending.body == callback_body(failed)


def test_claim_callbacks_takes_at_most_the_limit_earliest_first(store: JobStore) -> None:
    jobs = [finish_with_callback(store, name) for name in "abc"]
    assert [p.job_id for p in store.claim_callbacks(2, hold_s=60)] == [jobs[0].id, jobs[1].id]
    assert [p.job_id for p in store.claim_callbacks(2, hold_s=60)] == [jobs[2].id]


def test_a_purged_job_takes_its_pending_callback_with_it(store: JobStore, clock: Clock) -> None:
    finish_with_callback(store)
    clock.now += 8 * 86400
    assert store.purge_expired() == 1
    assert store.pending_callbacks() == []


def test_the_backlog_counts_queued_and_running_jobs_and_ages_the_oldest_queued(store: JobStore, clock: Clock) -> None:
    assert store.backlog() == Backlog(queued=0, running=0, oldest_queued_s=0.0)
    first, second = submit(store, "a", "b")
    clock.now = first.created_at + 99  # the clock moves a second a reading
    assert store.backlog() == Backlog(queued=2, running=0, oldest_queued_s=100.0)
    claim(store)  # the first
    clock.now = second.created_at + 49
    assert store.backlog() == Backlog(queued=1, running=1, oldest_queued_s=50.0)
