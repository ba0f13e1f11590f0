"""The metrics on Ray's Prometheus endpoint after real traffic through the service: every metric
serve_app/metrics.py declares (and the Serve metrics the dashboard draws) is there, with values
a user would expect from what was sent."""

from __future__ import annotations

import shutil
import time
import wave
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hub_server import whisper_repo
from media import SAMPLE_WAV
from prometheus_client.parser import text_string_to_metric_families
from receiver import Receiver

from serve_app.local import APP_NAME
from serve_app.metrics import exported_names

pytestmark = pytest.mark.slow

METRICS_REPO = "test-org/whisper-tiny-metrics"  # downloaded by this test alone
Sample = tuple[str, dict[str, str], float]


def audio_seconds(path: Path) -> float:
    with wave.open(str(path)) as audio:
        return audio.getnframes() / audio.getframerate()


def scrape(url: str) -> list[Sample]:
    """The endpoint's samples of the main app (other apps of the session left out)."""
    text = httpx.get(url, timeout=30).text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("application", APP_NAME) == APP_NAME
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum over replicas of a series' samples with `labels` (-1 when there is none)."""
    found = [value for sample, tags, value in samples if sample == name and labels.items() <= tags.items()]
    return sum(found) if found else -1


def send_traffic(client: httpx.Client, hub, receiver: Receiver, job_folders: dict[str, Path]) -> str:
    """Transcriptions (whole and streamed), refusals, a diarization, a download, and a job whose
    callback fails once; the job's id."""
    wav = SAMPLE_WAV.read_bytes()
    transcribed = client.post("/v1/audio/transcriptions", files={"file": ("call.wav", wav)}, data={"model": "tiny.en"})
    assert transcribed.status_code == 200, transcribed.text
    streamed = client.post("/v1/audio/transcriptions?stream=true", files={"file": ("call.wav", wav)}, data={"model": "tiny.en"})
    assert streamed.status_code == 200 and "event: ok" in streamed.text
    missing = client.post("/v1/audio/transcriptions", files={"file": ("call.wav", wav)}, data={"model": "no-such-model"})
    assert missing.status_code == 404
    assert client.post("/v1/audio/transcriptions", data={"model": "tiny.en"}).status_code == 400
    diarized = client.post("/v1/audio/diarize", files={"file": ("call.wav", wav)}, data={"model": "tiny.en"})
    assert diarized.status_code == 200, diarized.text

    hub.repos.setdefault(METRICS_REPO, whisper_repo())
    downloaded = client.post("/v1/models", json={"path": METRICS_REPO})
    assert downloaded.status_code == 201, downloaded.text

    receiver.statuses = [500]  # the first try fails, the second is delivered
    call = shutil.copy(SAMPLE_WAV, job_folders["media"] / "metrics.wav")
    out = job_folders["out"] / "metrics"
    out.mkdir()
    submitted = client.post("/transcription/job", json={"path": str(call), "output_path": str(out), "callback": receiver.url})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 300
    while len(receiver.received) < 2:  # the job ran, and its callback was tried twice
        assert time.monotonic() < deadline, f"the job and its callback: {client.get(f'/transcription/job/{job_id}').json()}"
        time.sleep(0.2)
    assert client.get(f"/transcription/job/{job_id}").json()["status"] == "COMPLETED"
    return job_id


def test_every_metric_is_scraped_after_traffic_with_sensible_values(
    service, client: httpx.Client, hub, receiver: Receiver, job_folders: dict[str, Path]
) -> None:
    job_id = send_traffic(client, hub, receiver, job_folders)
    sent = audio_seconds(SAMPLE_WAV)
    requests = "ray_whisper_http_requests_total"
    checks: dict[str, Callable[[list[Sample]], bool]] = {
        "transcriptions answered 200": lambda s: total(s, requests, route="/v1/audio/transcriptions", status="200") >= 2,
        "a 404 counted by its route": lambda s: total(s, requests, route="/v1/audio/transcriptions", status="404") >= 1,
        "a 400 counted by its route": lambda s: total(s, requests, route="/v1/audio/transcriptions", status="400") >= 1,
        "the job submission, 202": lambda s: total(s, requests, route="/transcription/job", method="POST", status="202") >= 1,
        "the job read by its id's template": lambda s: total(s, requests, route="/transcription/job/{id}", status="200") >= 1,
        "audio transcribed": lambda s: total(s, "ray_whisper_audio_seconds_total", task="transcribe") >= 3 * sent,
        "audio diarized": lambda s: total(s, "ray_whisper_audio_seconds_total", task="diarize") >= sent,
        "real-time factor": lambda s: total(s, "ray_whisper_real_time_factor_sum", task="transcribe") > 0,
        "real-time factor of diarization": lambda s: total(s, "ray_whisper_real_time_factor_count", task="diarize") >= 1,
        "time to first segment": lambda s: (
            total(s, "ray_whisper_time_to_first_segment_seconds_count") >= 3
            and total(s, "ray_whisper_time_to_first_segment_seconds_sum") > 0
        ),
        "batch fill": lambda s: total(s, "ray_whisper_batched_chunks_total") >= total(s, "ray_whisper_batches_total") > 0,
        "speech batched, no more than the audio": lambda s: (
            0
            < total(s, "ray_whisper_batched_audio_seconds_total")
            <= total(s, "ray_whisper_audio_seconds_total", task="transcribe")
        ),
        "chunks waiting": lambda s: total(s, "ray_whisper_batcher_waiting_chunks") >= 0,
        "requests decoding": lambda s: total(s, "ray_whisper_decoding_requests") >= 0,
        "a transcription model loaded": lambda s: (
            total(s, "ray_whisper_model_loads_total", kind="transcription", outcome="loaded") >= 1
        ),
        "a diarization pipeline loaded": lambda s: total(s, "ray_whisper_model_loads_total", kind="diarization") >= 1,
        "load time": lambda s: total(s, "ray_whisper_model_load_seconds_sum") > 0,
        "a download": lambda s: total(s, "ray_whisper_model_downloads_total", outcome="downloaded") >= 1,
        "jobs queued": lambda s: total(s, "ray_whisper_jobs_queued") >= 0,
        "jobs running": lambda s: total(s, "ray_whisper_jobs_running") >= 0,
        "oldest queued job": lambda s: total(s, "ray_whisper_oldest_queued_job_age_seconds") >= 0,
        "a job completed": lambda s: total(s, "ray_whisper_jobs_finished_total", status="COMPLETED") >= 1,
        "a callback try failed": lambda s: total(s, "ray_whisper_callbacks_total", outcome="retrying") >= 1,
        "a callback delivered": lambda s: total(s, "ray_whisper_callbacks_total", outcome="delivered") >= 1,
    }
    deadline = time.monotonic() + 180  # Ray exports every few seconds
    while True:
        samples = scrape(service.metrics_url)
        failing = [what for what, check in checks.items() if not check(samples)]
        missing = sorted(exported_names() - {name for name, _, _ in samples})
        if not failing and not missing:
            break
        assert time.monotonic() < deadline, f"not as expected: {failing}; not exported: {missing}"
        time.sleep(2)
    routes = {tags["route"] for name, tags, _ in samples if name == requests}
    assert not any(job_id in route for route in routes), "a raw path was counted as a route"
