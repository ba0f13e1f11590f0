"""Every refusal the /v1 spec lists: its status, and a reason a person can act on."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from conftest import UPLOAD_LIMIT_MB
from media import SAMPLE_WAV, video_without_sound

pytestmark = pytest.mark.slow


def post(
    client: httpx.Client, *, route: str = "transcriptions", file: tuple[str, bytes] | None = None, **fields: str
) -> httpx.Response:
    files = {"file": file} if file is not None else {"_": ("", b"")}
    return client.post(f"/v1/audio/{route}", files=files, data=fields)


SAMPLE = ("sample.wav", SAMPLE_WAV.read_bytes())


@pytest.mark.parametrize(
    ("route", "file", "fields", "status", "reason"),
    [
        ("transcriptions", None, {"model": "tiny.en"}, 400, "file is required"),
        ("transcriptions", SAMPLE, {}, 400, "model is required"),
        ("transcriptions", SAMPLE, {"model": "large-v9"}, 404, "model not found"),
        ("transcriptions", SAMPLE, {"model": "tiny.en", "response_format": "docx"}, 400, "json, verbose_json, text, srt, vtt"),
        ("transcriptions", SAMPLE, {"model": "base", "language": "xx"}, 400, "language 'xx'"),
        ("transcriptions", SAMPLE, {"model": "tiny.en", "language": "de"}, 400, "English-only"),
        ("translations", SAMPLE, {"model": "tiny.en"}, 400, "English-only and cannot translate"),
        ("transcriptions", SAMPLE, {"model": "tiny.en", "temperature": "hot"}, 400, "temperature"),
        ("transcriptions", SAMPLE, {"model": "tiny.en", "timestamp_granularities[]": "word"}, 400, "verbose_json"),
        ("transcriptions", ("notes.txt", b"these are not the bytes of any media file\n" * 50), {"model": "tiny.en"}, 415, ""),
        ("transcriptions", ("random.bin", bytes(range(256)) * 64), {"model": "tiny.en"}, 415, ""),
        ("transcriptions", ("empty.wav", b""), {"model": "tiny.en"}, 400, "file is empty"),
    ],
)
def test_refusals(client: httpx.Client, route, file, fields, status, reason) -> None:
    response = post(client, route=route, file=file, **fields)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status
    assert reason in body["reason"]
    assert body["error"]["message"] == body["reason"]


def test_media_without_an_audio_stream_is_refused(client: httpx.Client, tmp_path: Path) -> None:
    silent_video = video_without_sound(tmp_path / "no-audio.mp4")
    response = post(client, file=("no-audio.mp4", silent_video.read_bytes()), model="tiny.en")
    assert response.status_code == 415
    assert response.json()["reason"] == "file has no audio stream"


def test_a_body_over_the_limit_is_refused(client: httpx.Client) -> None:
    too_big = ("big.wav", b"\0" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 1))
    response = post(client, file=too_big, model="tiny.en")
    assert response.status_code == 413
    assert f"{UPLOAD_LIMIT_MB * 1024 * 1024} bytes" in response.json()["reason"]


def test_an_announced_oversize_body_is_refused_before_it_is_sent(service) -> None:
    """Only the headers go out: the 413 must come back without the body ever being read."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 10000000000\r\n\r\n"
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer


def test_unknown_paths_and_methods_answer_json(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["code"] == 404
    wrong_method = client.delete("/v1/audio/transcriptions")
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.json()["reason"]


def test_a_request_that_is_not_multipart_is_refused(client: httpx.Client) -> None:
    response = client.post("/v1/audio/transcriptions", json={"model": "tiny.en"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["reason"]
