"""Hostile media through Ray Serve: decompression bombs and files that name other files."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import UPLOAD_LIMIT_MB
from media import SAMPLE_WAV, flac_bomb

pytestmark = pytest.mark.slow

BOMB_MINUTES = 241
"""Just over the main service's max_audio_minutes (240, the default); its header declares no length."""
REFUSED_FORMAT = "file is not audio or video in a format this service reads"


def wait_for(client: httpx.Client, job_id: str, *, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/transcription/job/{job_id}").json())["status"] not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout:.0f}s: {job}"
        time.sleep(0.1)
    return job


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = flac_bomb(BOMB_MINUTES)
    assert len(data) < UPLOAD_LIMIT_MB * 2**20 / 4, "the bomb no longer fits well under the upload limit"
    return data


def test_eight_bombs_at_once_get_413_while_ping_answers_promptly(service, client: httpx.Client, bomb: bytes) -> None:
    pings: list[tuple[int, float]] = []
    posting = threading.Event()

    def ping() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            while posting.is_set():
                started = time.perf_counter()
                status = http.get("/v1/ping").status_code
                pings.append((status, time.perf_counter() - started))
                time.sleep(0.05)

    async def post_bombs() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=300, limits=httpx.Limits(max_connections=8)) as http:
            return await asyncio.gather(
                *(
                    http.post("/v1/audio/transcriptions", files={"file": ("silence.flac", bomb)}, data={"model": "tiny.en"})
                    for _ in range(8)
                )
            )

    posting.set()
    pinger = threading.Thread(target=ping)
    pinger.start()
    started = time.perf_counter()
    try:
        responses = asyncio.run(post_bombs())
    finally:
        posting.clear()
        pinger.join()
    took = time.perf_counter() - started

    worst = max(seconds for _, seconds in pings)
    print(
        f"\n8 bombs of {BOMB_MINUTES} min ({len(bomb) // 1024} KiB each) refused in {took:.1f} s; "
        f"{len(pings)} pings meanwhile, the slowest {worst * 1000:.0f} ms"
    )
    assert [r.status_code for r in responses] == [413] * 8, [r.text for r in responses]
    assert all("holds more than 240.0 minutes" in r.json()["reason"] for r in responses)
    assert pings and {status for status, _ in pings} == {200}
    # A liveness bound, not a speed claim: behind the decoding, pings waited for every bomb (about 10 s).
    assert worst < 5.0, f"a ping took {worst:.2f} s while the bombs decoded"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        pytest.param("list.ffconcat", b"ffconcat version 1.0\nfile /etc/passwd\n", id="concat, absolute"),
        pytest.param("list.txt", b"ffconcat version 1.0\nfile secret.wav\n", id="concat, relative"),
        pytest.param(
            "call.m3u8",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/part.aac\n#EXT-X-ENDLIST\n",
            id="m3u8",
        ),
    ],
)
def test_uploaded_lists_and_playlists_are_refused_415(client: httpx.Client, name: str, body: bytes) -> None:
    response = client.post("/v1/audio/transcriptions", files={"file": (name, body)}, data={"model": "tiny.en"})
    assert response.status_code == 415, response.text
    assert response.json()["reason"].startswith("file is not audio or video")


def test_a_concat_job_in_the_media_folder_fails_alike_whichever_file_it_names(
    client: httpx.Client, job_folders: dict[str, Path]
) -> None:
    media = job_folders["media"]
    (media / "secret.wav").write_bytes(SAMPLE_WAV.read_bytes())
    errors = []
    for name in ("secret.wav", "missing.wav"):
        listing = media / f"names-{name}.ffconcat"
        listing.write_text(f"ffconcat version 1.0\nfile {name}\n")
        response = client.post("/transcription/job", json={"path": str(listing), "output_path": str(job_folders["out"])})
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"])
        assert job["status"] == "FAILED", job
        errors.append(job["error"])
    assert errors[0] == errors[1] and errors[0].startswith(REFUSED_FORMAT), errors
