"""Past capacity, with parts dying, with hostile input, and behind keys: answers stay clear."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import ray
from conftest import ALT_API_KEY, ALT_ORIGIN, ALT_TIMEOUT_S
from media import SAMPLE_WAV, claim_duration, transcode
from ray.util.state import list_actors

pytestmark = pytest.mark.slow

KEYED = {"Authorization": f"Bearer {ALT_API_KEY}"}


def service_memory() -> int:
    """Resident bytes of this test process and its descendants: the local Ray cluster it
    started, the service's replicas included (and no other Ray of the same host)."""
    me = psutil.Process()
    total = me.memory_info().rss
    for process in me.children(recursive=True):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_past_capacity_every_answer_is_a_success_or_a_503_with_retry_after(service, client: httpx.Client) -> None:
    audio = SAMPLE_WAV.read_bytes()
    baseline, peak = service_memory(), 0
    sampling = threading.Event()

    def sample_memory() -> None:
        nonlocal peak
        while not sampling.is_set():
            peak = max(peak, service_memory())
            time.sleep(0.2)

    async def one(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio)}, data={"model": "tiny.en"})

    async def burst(count: int) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=service.url, timeout=180, limits=limits) as http:
            return await asyncio.gather(*(one(http) for _ in range(count)))

    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    try:
        responses = asyncio.run(burst(48))  # the config queues 8 a replica behind 2 running
    finally:
        sampling.set()
        sampler.join()

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "48 requests at once never met the queue bound"
    reasons = {r.text for r in refused}
    assert all(r.headers.get("Retry-After", "").isdigit() and "capacity" in r.json()["reason"] for r in refused), reasons
    assert statuses.count(200) >= 10
    print(
        f"\nload: {len(statuses)} requests, {statuses.count(200)} done, {len(refused)} refused with 503; "
        f"memory {baseline / 2**30:.2f} GiB before, {peak / 2**30:.2f} GiB at peak"
    )
    assert peak - baseline < 2 * 2**30, "memory grew by over 2 GiB under load"
    after = client.post("/v1/audio/transcriptions", files={"file": ("call.wav", audio)}, data={"model": "tiny.en"})
    assert after.status_code == 200 and "Chicago" in after.json()["text"]


def test_a_transcriber_killed_mid_request_fails_that_request_clearly_and_is_replaced(
    service, client: httpx.Client, long_english_wav: Path
) -> None:
    answer: list[httpx.Response] = []
    asking = threading.Thread(
        target=lambda: answer.append(
            client.post("/v1/audio/transcriptions", files={"file": long_english_wav.open("rb")}, data={"model": "tiny.en"})
        )
    )
    asking.start()
    replicas = list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", "ServeReplica:whisper:Transcriber"), ("state", "=", "ALIVE")],
        detail=True,
    )
    assert replicas
    time.sleep(1.5)  # the request is decoding by now (its file takes several seconds)
    for replica in replicas:
        os.kill(replica.pid, signal.SIGKILL)
    asking.join(120)
    [response] = answer
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        assert "died" in response.json()["reason"] or "no running replica" in response.json()["reason"]
        assert response.headers["Retry-After"].isdigit()

    service.wait_healthy(timeout=180)
    for _ in range(10):
        again = client.post(
            "/v1/audio/transcriptions", files={"file": ("call.wav", SAMPLE_WAV.read_bytes())}, data={"model": "tiny.en"}
        )
        assert again.status_code == 200, again.text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    folder = tmp_path_factory.mktemp("hostile")
    mp3 = transcode(SAMPLE_WAV, folder / "call.mp3", codec="mp3").read_bytes()
    return {
        "truncated mp3": ("call.mp3", mp3[: len(mp3) // 3]),
        "zip renamed .wav": ("call.wav", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + os.urandom(4000)),
        "0-byte file": ("call.wav", b""),
        "header claiming hours": ("call.mp3", claim_duration(mp3, hours=10)),
    }


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("truncated mp3", 400, "cut short"),
        ("zip renamed .wav", 415, "not audio or video"),
        ("0-byte file", 400, "file is empty"),
        ("header claiming hours", 413, "declares 600.0 minutes"),
    ],
)
def test_hostile_files_get_a_4xx_with_a_reason(client: httpx.Client, hostile, case: str, status: int, reason: str) -> None:
    response = client.post("/v1/audio/transcriptions", files={"file": hostile[case]}, data={"model": "tiny.en"})
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]


def multipart(fields: list[tuple[str, bytes]], boundary: str = "hostile") -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


FILE_PART = (
    b'--hostile\r\nContent-Disposition: form-data; name="file"; filename="call.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n" + SAMPLE_WAV.read_bytes() + b"\r\n"
)


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ([("model", b"\xff\xfe\xfd")], 404, "model not found"),
        ([("model", b"tiny.en"), ("prompt", b"word " * 2000)], 400, "prompt is"),
        ([("model", b"tiny.en"), ("prompt", b"x" * 2_000_000)], 400, "maximum size"),
        ([("model", b"tiny.en")] + [(f"f{n}", b"1") for n in range(10_000)], 400, "Too many fields"),
    ],
    ids=["non-UTF-8 field", "huge prompt", "giant field", "10,000 fields"],
)
def test_hostile_forms_get_a_4xx_with_a_reason(service, fields, status: int, reason: str) -> None:
    body, headers = multipart(fields)
    body = FILE_PART + body
    response = httpx.post(f"{service.url}/v1/audio/transcriptions", content=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]


def test_api_keys(alt: str) -> None:
    assert httpx.get(f"{alt}/v1/ping").status_code == 200, "the probe must stay open"
    missing = httpx.get(f"{alt}/v1/models")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "API key" in missing.json()["reason"]
    assert httpx.get(f"{alt}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{alt}/v1/models", headers=KEYED).status_code == 200


def test_cors_for_the_configured_origin_only(alt: str) -> None:
    preflight = {"Origin": ALT_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = httpx.options(f"{alt}/v1/audio/transcriptions", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALT_ORIGIN
    other = httpx.get(f"{alt}/v1/models", headers={"Origin": "https://elsewhere.example", **KEYED})
    assert "access-control-allow-origin" not in other.headers


def test_media_over_the_duration_limit_is_413(alt: str) -> None:
    response = httpx.post(
        f"{alt}/v1/audio/transcriptions",
        files={"file": SAMPLE_WAV.open("rb")},
        data={"model": "tiny.en"},
        headers=KEYED,
        timeout=60,
    )
    assert response.status_code == 413
    assert "over the limit of 0.25 minutes" in response.json()["reason"]


def test_a_transcription_over_the_request_timeout_is_504(alt: str, german_wav: Path) -> None:
    response = httpx.post(
        f"{alt}/v1/audio/transcriptions", files={"file": german_wav.open("rb")}, data={"model": "base"}, headers=KEYED, timeout=60
    )
    assert response.status_code == 504, response.text
    assert f"{ALT_TIMEOUT_S:g} s" in response.json()["reason"]
