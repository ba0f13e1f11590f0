"""The running service tried as an attacker would (issue 13), through Ray Serve's own proxy:
keys, model management, foreign pages, content types, hostile bodies, slow clients, leaks."""

from __future__ import annotations

import asyncio
import glob
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import ALT_ADMIN_KEY, ALT_API_KEY, ALT_IDLE_S, HUB_COPY
from ray._private import worker

pytestmark = pytest.mark.slow

USER = {"Authorization": f"Bearer {ALT_API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ALT_ADMIN_KEY}"}


def test_ordinary_keys_transcribe_and_admin_keys_manage(alt: str) -> None:
    assert httpx.get(f"{alt}/v1/models", headers=USER).status_code == 200
    for method, path, body in [
        ("POST", "/v1/models", {"path": "small.en"}),
        ("DELETE", "/v1/models/base", None),
        ("GET", "/stats", None),
    ]:
        refused = httpx.request(method, f"{alt}{path}", json=body, headers=USER)
        assert refused.status_code == 403, refused.text
        assert "admin key" in refused.json()["reason"]
    assert httpx.get(f"{alt}/v1/models/base", headers=USER).status_code == 200, "the refused delete deleted nothing"
    passed = httpx.post(f"{alt}/v1/models", json={"path": "../../etc"}, headers=ADMIN)
    assert passed.status_code == 400, passed.text


def test_models_are_deleted_by_exact_id_and_never_the_default(client: httpx.Client) -> None:
    for name in ("TINY.EN%20", "tiny.en%20", "Tiny.En"):
        assert client.delete(f"/v1/models/{name}").status_code == 404
    default = client.delete("/v1/models/tiny.en")
    assert default.status_code == 409
    assert "default_model" in default.json()["reason"]
    assert client.get("/v1/models/tiny.en").status_code == 200
    assert client.get("/v1/health").status_code == 200


def test_a_model_a_request_is_using_cannot_be_deleted(client: httpx.Client, long_english_wav: Path) -> None:
    created = client.post("/v1/models", json={"path": HUB_COPY})
    assert created.status_code in (200, 201), created.text
    model = created.json()["id"]
    answers: dict[str, httpx.Response] = {}

    def delete_while_decoding() -> None:
        time.sleep(0.5)
        answers["delete"] = client.delete(f"/v1/models/{model}")

    deleting = threading.Thread(target=delete_while_decoding)
    with (
        long_english_wav.open("rb") as media,
        client.stream("POST", "/v1/audio/transcriptions?stream=true", files={"file": media}, data={"model": model}) as stream,
    ):
        deleting.start()
        events = [line for line in stream.iter_lines() if line.startswith("event:")]
    deleting.join(60)
    assert "event: ok" in events
    assert answers["delete"].status_code == 409, answers["delete"].text
    assert "in use" in answers["delete"].json()["reason"]
    assert client.delete(f"/v1/models/{model}").status_code == 200, "once the request ended, the model may go"


def test_a_foreign_page_cannot_download_a_model_or_submit_a_job(client: httpx.Client) -> None:
    listed = client.get("/v1/models").json()["models"]
    for path, body in [("/v1/models", {"path": "small.en"}), ("/transcription/job", {"path": "/etc/passwd"})]:
        simple = client.post(path, content=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert simple.status_code == 415, simple.text
        foreign = client.post(path, json=body, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403, foreign.text
    assert client.get("/v1/models").json()["models"] == listed


@pytest.mark.parametrize("path", ["/v1/models", "/transcription/job"])
def test_json_nested_100000_deep_is_a_400(client: httpx.Client, path: str) -> None:
    response = client.post(path, content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "nested deeper" in response.json()["reason"]


def test_a_unicode_digit_speaker_count_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/audio/diarize", files={"file": ("a.wav", b"RIFF")}, data={"model": "tiny.en", "num_speakers": "²"}
    )
    assert response.status_code == 400
    assert "num_speakers must be a whole number" in response.json()["reason"]


def test_stalled_uploads_are_cut_and_the_service_keeps_answering(service, alt: str) -> None:
    head = (
        "POST /alt/v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ALT_API_KEY}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 100000\r\n\r\n--x\r\n"
    ).encode()

    async def stalled() -> tuple[bytes, float]:
        # A raw connection: HTTP clients send the whole body before they read an answer.
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(head)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
        writer.close()
        return status_line, time.monotonic() - started

    async def ping_meanwhile(http: httpx.AsyncClient) -> list[float]:
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            assert (await http.get(f"{alt}/v1/ping")).status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
        return latencies

    async def attack() -> tuple[list[tuple[bytes, float]], list[float]]:
        async with httpx.AsyncClient(timeout=30) as http:
            uploads = [asyncio.ensure_future(stalled()) for _ in range(20)]
            latencies = await ping_meanwhile(http)
            return await asyncio.gather(*uploads), latencies

    answers, latencies = asyncio.run(attack())
    assert {status for status, _ in answers} == {b"HTTP/1.1 408 Request Timeout\r\n"}, answers
    slowest = max(waited for _, waited in answers)
    print(
        f"\n20 stalled uploads cut after at most {slowest:.1f} s (upload_idle_timeout_s {ALT_IDLE_S:g}); "
        f"ping meanwhile: worst {max(latencies) * 1000:.0f} ms"
    )
    assert slowest < 20, "the stalled uploads were held far past upload_idle_timeout_s"
    assert max(latencies) < 5.0, "the probe waited behind stalled uploads"  # liveness, not speed


def ingress_logs() -> str:
    folder = worker._global_node.get_logs_dir_path()
    return "".join(Path(name).read_text(errors="replace") for name in glob.glob(f"{folder}/serve/replica_whisper_Ingress_*.log"))


def test_a_client_gone_mid_upload_is_one_info_line(service) -> None:
    before = ingress_logs()
    with socket.create_connection(("127.0.0.1", service.port)) as raw:
        raw.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n\r\n"
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "went away" not in ingress_logs()[len(before) :]:
        time.sleep(0.5)
    new = ingress_logs()[len(before) :]
    assert "went away" in new
    assert "Traceback" not in new and " ERROR " not in new, new[-3000:]
