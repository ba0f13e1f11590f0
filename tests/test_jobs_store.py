"""The durable queue, on real SQLite files: order, state changes, restarts, retention, threads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_app.errors import Conflict, NotFound
from serve_app.jobs import Job, JobStatus, JobStore


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


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs", retention_days=7, clock=clock) as opened:
        yield opened


def new_job(name: str = "a", *, priority: int = 0) -> Job:
    return Job(path=f"/data/media/{name}.mp3", output_path="/data/out", model="tiny.en", priority=priority)


def submit(store: JobStore, *names: str, priority: int = 0) -> list[Job]:
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


def test_the_file_is_sqlite_in_wal_mode(store: JobStore) -> None:
    assert store.path.name == "jobs.sqlite3"
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_queued_jobs_survive_closing_and_reopening(tmp_path: Path) -> None:
    with JobStore(tmp_path) as first:
        submitted = submit(first, "a", "b", "c")
    with JobStore(tmp_path) as reopened:
        assert [job.id for job in reopened.listing()] == [job.id for job in submitted]
        assert names([claim(reopened), claim(reopened), claim(reopened)]) == ["a", "b", "c"]


def test_jobs_run_in_submission_order(store: JobStore) -> None:
    submit(store, "a", "b", "c")
    assert names([claim(store), claim(store), claim(store)]) == ["a", "b", "c"]
    assert store.claim_next() is None


def test_a_higher_priority_runs_first_then_submission_order(store: JobStore) -> None:
    submit(store, "low1")
    submit(store, "high1", priority=5)
    submit(store, "low2")
    submit(store, "urgent", priority=9)
    submit(store, "high2", priority=5)
    submit(store, "later", priority=-1)
    expected = ["urgent", "high1", "high2", "low1", "low2", "later"]
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
    submit(store, "q2", priority=1)
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


def test_a_job_running_when_the_process_died_runs_again_then_fails(tmp_path: Path) -> None:
    first = JobStore(tmp_path)
    (job,) = submit(first, "a")
    (other,) = submit(first, "b")
    assert claim(first).id == job.id
    first.set_progress(job.id, 60)
    del first  # the process died mid-job: nothing completed, nothing closed on purpose

    second = JobStore(tmp_path)
    recovery = second.recover_after_restart(max_attempts=2)
    assert ([j.id for j in recovery.requeued], recovery.failed) == ([job.id], [])
    again = second.get(job.id)
    assert (again.status, again.progress, again.started_at) == (JobStatus.QUEUED, 0, None)
    assert again.error == "the service stopped while the job ran"
    # It keeps its place ahead of the jobs submitted after it.
    retried = claim(second)
    assert (retried.id, retried.attempts) == (job.id, 2)
    del second

    third = JobStore(tmp_path)
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


def test_concurrent_claims_never_hand_out_a_job_twice(tmp_path: Path) -> None:
    with JobStore(tmp_path) as shared, JobStore(tmp_path) as other_connection:
        submitted = {job.id for job in submit(shared, *(f"job{i}" for i in range(60)))}
        claimed: list[str] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker(store: JobStore) -> None:
            try:
                while (job := store.claim_next()) is not None:
                    with lock:
                        claimed.append(job.id)
                    store.complete(job.id, "text", [], 0.1, attempt=job.attempts)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(shared if i % 2 else other_connection,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(claimed) == len(submitted)
        assert set(claimed) == submitted
        assert shared.stats() == {"Queued": 0, "Running": 0, "Processed": 60}


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
