"""The JobScheduler without Ray: a real JobStore and job folders, a stand-in for the Pipeline
that holds each job until the test lets it go, so that the order, the capacity and the ends
of the jobs can be watched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from serve_app.errors import BadRequest
from serve_app.jobs import CallbackSettings, Job, JobFolders, JobScheduler, JobStatus, JobStore
from serve_app.jobs.scheduler import REPLICA_DIED
from serve_app.options import DecodeOptions
from serve_app.transcript import Segment, TranscriptInfo

DURATION = 10.0


class ReplicaDied(Exception):
    """Stands in for RayActorError."""


class Pipeline:
    """`prepare` and `stream` as serve_app.pipeline.Pipeline has them, over scripted media: each
    job streams its info and a first segment, then waits for `finish(name)`; `fail[name]` is
    raised instead (at `prepare`)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.options: dict[str, DecodeOptions] = {}
        self.fail: dict[str, BaseException] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.most_running = 0

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def finish(self, name: str) -> None:
        self.gate(name).set()

    async def prepare(self, media: BinaryIO, model_name: str, options: DecodeOptions) -> str:
        name = Path(media.name).name
        self.started.append(name)
        self.options[name] = options
        if name in self.fail:
            raise self.fail[name]
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        return name

    async def stream(self, prepared: str, options: DecodeOptions) -> AsyncIterator[TranscriptInfo | Segment]:
        try:
            yield TranscriptInfo(task="transcribe", language=options.language or "en", duration=DURATION)
            yield Segment(id=0, start=0.0, end=DURATION / 2, text=f" The first half of {prepared}.")
            await self.gate(prepared).wait()
            yield Segment(id=1, start=DURATION / 2, end=DURATION, text=" The end.")
        finally:
            self.running -= 1


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.media, self.out = tmp_path / "media", tmp_path / "out"
        self.media.mkdir()
        self.out.mkdir()
        self.folders = JobFolders([self.media], [self.out])
        self.store = JobStore(tmp_path / "jobs")
        self.pipeline = Pipeline()
        self.capacity = 1
        self.asked = 0
        self.delivered: list[Job] = []

    def job(self, name: str, **fields: Any) -> Job:
        (self.media / name).write_bytes(b"media")
        return self.store.submit(Job(path=str(self.media / name), output_path=str(self.out), model="tiny.en", **fields))

    def scheduler(self, **overrides: Any) -> JobScheduler:
        async def capacity() -> int:
            self.asked += 1
            return self.capacity

        def deliver(job: Job, settings: CallbackSettings, store: JobStore) -> None:
            self.delivered.append(job)

        arguments = {
            "capacity": capacity,
            "callbacks": CallbackSettings(),
            "max_attempts": 2,
            "replica_died": (ReplicaDied,),
            "deliver": deliver,
            "poll_s": 0.05,
        }
        return JobScheduler(self.store, self.pipeline, self.folders, **(arguments | overrides))

    def status(self, job: Job) -> JobStatus:
        return self.store.get(job.id).status


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=60))


async def until(condition: Callable[[], bool], what: str, *, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s in vain: {what}")
        await asyncio.sleep(0.01)


def test_jobs_run_in_queue_order_and_write_their_outputs(setup: Setup) -> None:
    first, second = setup.job("first.wav"), setup.job("second.wav", language="de")
    urgent = setup.job("urgent.wav", priority=5)

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        for name in ("urgent.wav", "first.wav", "second.wav"):
            await until(lambda name=name: name in setup.pipeline.started, f"{name} started")
            setup.pipeline.finish(name)
        await until(lambda: all(setup.status(job) == JobStatus.COMPLETED for job in (first, second, urgent)), "all done")
        await scheduler.stop()

    run(test)
    assert setup.pipeline.started == ["urgent.wav", "first.wav", "second.wav"]  # priority, then submission
    assert setup.pipeline.options["second.wav"] == DecodeOptions(language="de")
    assert setup.pipeline.options["first.wav"] == DecodeOptions(language=None)
    done = setup.store.get(first.id)
    assert (done.progress, done.result, done.error) == (100, "The first half of first.wav. The end.", "")
    assert done.outputs == [str(setup.out / "first.txt")]
    assert (setup.out / "first.txt").read_text().splitlines() == ["The first half of first.wav.", "The end."]
    assert setup.delivered == []  # no callback asked for


def test_no_more_jobs_run_than_the_capacity_allows(setup: Setup) -> None:
    jobs = [setup.job(f"{number}.wav") for number in range(5)]
    setup.capacity = 2

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        await until(lambda: len(setup.pipeline.started) == 2, "two started")
        await asyncio.sleep(0.2)  # a few polls: still two
        assert sorted(setup.pipeline.started) == ["0.wav", "1.wav"]  # the two first, in either order
        assert [setup.status(job) for job in jobs] == [JobStatus.RUNNING] * 2 + [JobStatus.QUEUED] * 3
        assert scheduler.running == 2
        # The progress of a job under way: the first segment ends half-way.
        await until(lambda: setup.store.get(jobs[0].id).progress == 49, "the progress of the first segment")

        setup.pipeline.finish("1.wav")
        await until(lambda: len(setup.pipeline.started) == 3, "a third started as one ended")
        assert setup.status(jobs[1]) == JobStatus.COMPLETED

        setup.capacity = 4  # asked again before each claim: more replicas, more jobs
        await until(lambda: len(setup.pipeline.started) == 5, "the rest started")
        assert setup.pipeline.most_running == 4
        for number in (0, 2, 3, 4):
            setup.pipeline.finish(f"{number}.wav")
        await until(lambda: all(setup.status(job) == JobStatus.COMPLETED for job in jobs), "all done")
        await scheduler.stop()

    run(test)


def test_a_failure_is_recorded_with_its_reason_and_called_back(setup: Setup) -> None:
    refused = setup.job("silent.mp4", callback="http://receiver.test/done")
    broken = setup.job("broken.wav")
    missing = setup.job("missing.wav")
    (setup.media / "missing.wav").unlink()
    after = setup.job("after.wav")
    setup.pipeline.fail = {"silent.mp4": BadRequest("file has no audio stream"), "broken.wav": RuntimeError("boom")}

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        await until(lambda: "after.wav" in setup.pipeline.started, "the job after the failures started")
        setup.pipeline.finish("after.wav")
        await until(lambda: setup.status(after) == JobStatus.COMPLETED, "the job after them done")
        await scheduler.stop()

    run(test)
    assert (setup.status(refused), setup.store.get(refused.id).error) == (JobStatus.FAILED, "file has no audio stream")
    assert setup.store.get(broken.id).error == "internal error (RuntimeError: boom)"
    failed = setup.store.get(missing.id)
    assert failed.status == JobStatus.FAILED and "does not exist" in failed.error
    assert [(job.id, job.status, job.error) for job in setup.delivered] == [
        (refused.id, JobStatus.FAILED, "file has no audio stream")
    ]
    assert [path.name for path in setup.out.iterdir()] == ["after.txt"]  # a failed job writes nothing


def test_a_job_whose_replica_died_is_queued_again_then_given_up(setup: Setup) -> None:
    job = setup.job("unlucky.wav", callback="http://receiver.test/done")
    setup.pipeline.fail = {"unlucky.wav": ReplicaDied()}

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        await until(lambda: setup.status(job) == JobStatus.FAILED, "given up")
        await until(lambda: len(setup.delivered) == 1, "called back")
        await scheduler.stop()

    run(test)
    assert setup.pipeline.started == ["unlucky.wav", "unlucky.wav"]  # max_attempts
    failed = setup.store.get(job.id)
    assert (failed.attempts, failed.error) == (2, f"{REPLICA_DIED}; gave up after 2 tries")
    assert [finished.id for finished in setup.delivered] == [job.id]  # once, when it failed for good


def test_the_start_puts_back_the_jobs_a_dead_process_left(setup: Setup) -> None:
    again = setup.job("again.wav")
    spent = setup.job("spent.wav", callback="http://receiver.test/done")
    # A process claimed both and died, spent.wav on its last try.
    assert [setup.store.claim_next().id, setup.store.claim_next().id] == [again.id, spent.id]
    setup.store.requeue(spent.id, "died", max_attempts=2)
    assert setup.store.claim_next().id == spent.id
    assert (setup.status(again), setup.status(spent)) == (JobStatus.RUNNING, JobStatus.RUNNING)

    async def test() -> None:
        scheduler = setup.scheduler()
        recovery = scheduler.start()
        assert ([job.id for job in recovery.requeued], [job.id for job in recovery.failed]) == ([again.id], [spent.id])
        await until(lambda: "again.wav" in setup.pipeline.started, "the requeued job started")
        setup.pipeline.finish("again.wav")
        await until(lambda: setup.status(again) == JobStatus.COMPLETED, "it completed")
        await until(lambda: len(setup.delivered) == 1, "the spent job called back")
        await scheduler.stop()

    run(test)
    assert setup.pipeline.started == ["again.wav"]
    assert setup.delivered[0].id == spent.id and setup.delivered[0].status == JobStatus.FAILED


def test_a_submission_wakes_the_loop_before_its_poll(setup: Setup) -> None:
    async def test() -> None:
        scheduler = setup.scheduler(poll_s=60)
        scheduler.start()
        await until(lambda: setup.asked == 1, "the loop looked once")
        await asyncio.sleep(0.1)  # found nothing, and waits
        setup.job("late.wav")
        scheduler.wake()
        await until(lambda: setup.pipeline.started == ["late.wav"], "claimed on waking")
        assert setup.asked == 2
        setup.pipeline.finish("late.wav")
        await scheduler.stop()

    run(test)


def test_the_scheduler_and_the_job_core_import_without_ray() -> None:
    code = (
        "import sys, serve_app.jobs, serve_app.jobs.scheduler; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'deployments') "
        "or m.startswith('serve_app.api'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import json; {code}"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == []
