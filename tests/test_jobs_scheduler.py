"""The JobScheduler without Ray: a real JobStore and job folders, a stand-in for the Pipeline
that holds each job until the test lets it go, and one for the ModelStore, so that the order,
the capacity, the model downloads, the ends of the jobs and their callbacks can be watched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from fakes import RecordedMetrics
from receiver import Receiver

from serve_app.errors import BadGateway, BadRequest
from serve_app.jobs import (
    SIGNATURE_HEADER,
    CallbackSettings,
    Job,
    JobFolders,
    JobScheduler,
    JobStatus,
    JobStore,
    PendingCallback,
    deliver_pending,
    verify_signature,
)
from serve_app.jobs.scheduler import REPLICA_DIED
from serve_app.metrics import JOBS_FINISHED, JOBS_QUEUED, JOBS_RUNNING, OLDEST_QUEUED_JOB_AGE
from serve_app.models.catalogue import ModelInfo
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
        self.models: dict[str, str] = {}
        self.language = "en"  # what "detection" finds

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def finish(self, name: str) -> None:
        self.gate(name).set()

    async def prepare(self, media: BinaryIO, model_name: str, options: DecodeOptions) -> str:
        name = Path(media.name).name
        self.started.append(name)
        self.models[name] = model_name
        self.options[name] = options
        if name in self.fail:
            raise self.fail[name]
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        return name

    async def stream(self, prepared: str, options: DecodeOptions) -> AsyncIterator[TranscriptInfo | Segment]:
        try:
            yield TranscriptInfo(task="transcribe", language=options.language or self.language, duration=DURATION)
            yield Segment(id=0, start=0.0, end=DURATION / 2, text=f" The first half of {prepared}.")
            await self.gate(prepared).wait()
            yield Segment(id=1, start=DURATION / 2, end=DURATION, text=" The end.")
        finally:
            self.running -= 1


def model_info(model_id: str) -> ModelInfo:
    return ModelInfo(id=model_id, path=f"/models/{model_id}", created=0)


class Models:
    """The ModelStore as JobModels: `present` models are found; a download of another waits
    for `release(name)` (or raises `fail[name]`), then it is present."""

    def __init__(self, *present: str) -> None:
        self.present = {name: model_info(name) for name in present}
        self.downloads: list[str] = []
        self.released: dict[str, asyncio.Event] = {}
        self.fail: dict[str, BaseException] = {}

    def release(self, name: str) -> None:
        self.released.setdefault(name, asyncio.Event()).set()

    async def find(self, name: str) -> ModelInfo | None:
        return self.present.get(name)

    async def download(self, name: str) -> ModelInfo:
        self.downloads.append(name)
        await self.released.setdefault(name, asyncio.Event()).wait()
        if name in self.fail:
            raise self.fail[name]
        self.present[name] = model_info(f"{name}-downloaded")
        return self.present[name]


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.media, self.out = tmp_path / "media", tmp_path / "out"
        self.media.mkdir()
        self.out.mkdir()
        self.folders = JobFolders([self.media], [self.out])
        self.store = JobStore(tmp_path / "jobs")
        self.pipeline = Pipeline()
        self.models = Models("tiny.en")
        self.capacity = 1
        self.asked = 0
        self.delivered: list[dict[str, Any]] = []  # the bodies of the callbacks, as sent

    def job(self, name: str, **fields: Any) -> Job:
        (self.media / name).write_bytes(b"media")
        fields = {"model": "tiny.en"} | fields
        return self.store.submit(Job(path=str(self.media / name), output_path=str(self.out), **fields))

    def scheduler(self, **overrides: Any) -> JobScheduler:
        async def capacity() -> int:
            self.asked += 1
            return self.capacity

        def deliver(pending: PendingCallback, settings: CallbackSettings, store: JobStore) -> None:
            self.delivered.append(json.loads(pending.body))
            store.callback_tried(pending.job_id, error="")

        arguments = {
            "models": self.models,
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
    urgent = setup.job("urgent.wav", priority=2000)

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
        await until(lambda: len(setup.delivered) == 1, "the failure called back")
        await scheduler.stop()

    run(test)
    assert (setup.status(refused), setup.store.get(refused.id).error) == (JobStatus.FAILED, "file has no audio stream")
    assert setup.store.get(broken.id).error == "internal error (RuntimeError: boom)"
    failed = setup.store.get(missing.id)
    assert failed.status == JobStatus.FAILED and "does not exist" in failed.error
    called_back = [(body["id"], body["status"], body["error"]) for body in setup.delivered]
    assert called_back == [(refused.id, "FAILED", "file has no audio stream")]
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
    assert [body["id"] for body in setup.delivered] == [job.id]  # once, when it failed for good


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
    assert setup.delivered[0]["id"] == spent.id and setup.delivered[0]["status"] == "FAILED"


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


def test_a_completed_job_shows_the_language_its_transcript_is_in(setup: Setup) -> None:
    detected, named = setup.job("detected.wav"), setup.job("named.wav", language="fr")
    setup.pipeline.language = "de"

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        for name in ("detected.wav", "named.wav"):
            await until(lambda name=name: name in setup.pipeline.started, f"{name} started")
            setup.pipeline.finish(name)
        await until(lambda: setup.status(named) == JobStatus.COMPLETED, "both done")
        await scheduler.stop()

    run(test)
    assert (setup.store.get(detected.id).language, setup.store.get(named.id).language) == ("de", "fr")


def test_a_job_downloads_its_missing_model_without_holding_a_slot(setup: Setup) -> None:
    first, second = setup.job("first.wav", model="small"), setup.job("second.wav", model="small")
    setup.job("other.wav")  # tiny.en, present

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        # Both jobs wait for one download of their model; the slot runs the job behind them.
        await until(lambda: setup.pipeline.started == ["other.wav"], "the job with a present model started")
        for job in (first, second):
            shown = setup.store.get(job.id).to_json()
            assert (shown["status"], shown["stage"], shown["progress"]) == ("RUNNING", "downloading model", 0)
        assert setup.models.downloads == ["small"]
        assert scheduler.running == 3 and setup.pipeline.most_running == 1

        setup.models.release("small")  # downloaded: the two wait for the slot
        await asyncio.sleep(0.2)
        assert setup.pipeline.started == ["other.wav"]
        setup.pipeline.finish("other.wav")
        await until(lambda: "first.wav" in setup.pipeline.started, "the first started once the slot was free")
        assert setup.store.get(first.id).stage == "transcribing"
        assert setup.pipeline.started == ["other.wav", "first.wav"]  # one slot: one at a time
        setup.pipeline.finish("first.wav")
        await until(lambda: "second.wav" in setup.pipeline.started, "the second started")
        setup.pipeline.finish("second.wav")
        await until(lambda: setup.status(second) == JobStatus.COMPLETED, "all done")
        await scheduler.stop()

    run(test)
    assert setup.pipeline.most_running == 1
    assert setup.pipeline.models == {"other.wav": "tiny.en", "first.wav": "small-downloaded", "second.wav": "small-downloaded"}
    done = setup.store.get(first.id)
    assert (done.status, done.stage, done.model) == (JobStatus.COMPLETED, "", "small")


def test_a_download_that_fails_fails_its_job_with_the_reason(setup: Setup) -> None:
    offline = "downloads from the hub are off on this server (HF_HUB_OFFLINE is set): unset it to download large-v2"
    job = setup.job("big.wav", model="large-v2", callback="http://receiver.test/done")
    setup.job("after.wav")
    setup.models.fail["large-v2"] = BadGateway(offline)
    setup.models.release("large-v2")

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        await until(lambda: setup.status(job) == JobStatus.FAILED, "the job failed")
        await until(lambda: "after.wav" in setup.pipeline.started, "the next job started")
        setup.pipeline.finish("after.wav")
        await until(lambda: len(setup.delivered) == 1, "called back")
        await scheduler.stop()

    run(test)
    failed = setup.store.get(job.id)
    assert (failed.error, failed.stage, failed.attempts) == (offline, "", 1)
    assert setup.delivered[0]["error"] == offline
    assert "big.wav" not in setup.pipeline.started


SLOW_RECEIVER = CallbackSettings(allowed_hosts=["127.0.0.1"], timeout=2, tries=3, backoff=0.05)


def test_a_receiver_that_does_not_answer_does_not_delay_the_next_job(setup: Setup, receiver: Receiver) -> None:
    receiver.statuses = [None] * 10  # holds every POST unanswered
    hooked = setup.job("hooked.wav", callback=receiver.url)
    after = setup.job("after.wav")

    async def test() -> None:
        scheduler = setup.scheduler(deliver=deliver_pending, callbacks=SLOW_RECEIVER)
        scheduler.start()
        await until(lambda: "hooked.wav" in setup.pipeline.started, "the first started")
        setup.pipeline.finish("hooked.wav")
        await until(lambda: "after.wav" in setup.pipeline.started, "the next started")
        await until(lambda: len(receiver.received) == 1, "the first try arrived")
        setup.pipeline.finish("after.wav")
        await until(lambda: setup.status(after) == JobStatus.COMPLETED, "the next done")
        assert setup.store.pending_callbacks()[0].job_id == hooked.id  # still being tried
        await scheduler.stop()

    run(test)
    finished, started = setup.store.get(hooked.id).finished_at, setup.store.get(after.id).started_at
    assert finished is not None and started is not None
    assert 0 <= started - finished < 1, f"the next job started {started - finished:.2f} s after the first ended"


def test_a_pending_callback_is_delivered_by_the_scheduler_that_starts_after_a_restart(
    setup: Setup, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.statuses = [503]
    settings = CallbackSettings(secret="s3cret", allowed_hosts=["127.0.0.1"], timeout=5, tries=3, backoff=1.0)
    job = setup.job("hooked.wav", callback=receiver.url)

    async def before_the_restart() -> None:
        scheduler = setup.scheduler(deliver=deliver_pending, callbacks=settings)
        scheduler.start()
        await until(lambda: "hooked.wav" in setup.pipeline.started, "started")
        setup.pipeline.finish("hooked.wav")
        await until(lambda: [p.tries for p in setup.store.pending_callbacks()] == [1], "the first try failed")
        await scheduler.stop()

    run(before_the_restart)
    setup.store.close()
    assert len(receiver.received) == 1
    setup.store = JobStore(tmp_path / "jobs")  # the process starts again

    async def after_the_restart() -> None:
        scheduler = setup.scheduler(deliver=deliver_pending, callbacks=settings)
        scheduler.start()
        await until(lambda: setup.store.pending_callbacks() == [], "delivered")
        await scheduler.stop()

    run(after_the_restart)
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first.body == second.body and json.loads(second.body)["status"] == "COMPLETED"
    assert verify_signature(second.body, second.headers[SIGNATURE_HEADER], "s3cret")
    assert setup.store.get(job.id).callback_error == ""
    assert setup.pipeline.started == ["hooked.wav"]  # the job itself did not run again


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


def test_the_queue_depth_its_oldest_job_and_how_runs_ended_go_to_the_metrics(setup: Setup) -> None:
    setup.job("done.wav")
    setup.job("waits.wav")
    setup.job("broken.wav")
    setup.pipeline.fail = {"broken.wav": BadRequest("file has no audio stream")}
    metrics = RecordedMetrics()

    async def test() -> None:
        scheduler = setup.scheduler(metrics=metrics)
        scheduler.start()
        await until(lambda: "done.wav" in setup.pipeline.started, "the first job started")
        # Read at the loop's first turn: one running, two waiting since their submission.
        await until(lambda: bool(metrics.values(JOBS_QUEUED)), "the depth recorded")
        assert (metrics.values(JOBS_QUEUED)[0], metrics.values(JOBS_RUNNING)[0]) == (2, 1)
        assert metrics.values(OLDEST_QUEUED_JOB_AGE)[0] >= 0
        for name in ("done.wav", "waits.wav"):
            await until(lambda name=name: name in setup.pipeline.started, f"{name} started")
            setup.pipeline.finish(name)
        await until(lambda: len(metrics.values(JOBS_FINISHED)) == 3, "three runs ended")
        await scheduler.stop()

    run(test)
    assert sorted(tags["status"] for tags in metrics.tagged(JOBS_FINISHED)) == ["COMPLETED", "COMPLETED", "FAILED"]
