"""The HTTP edge against an attacker, in-process: keys, model management, foreign pages,
content types, hostile bodies and slow uploads (issue 13). No Ray: the real app over the
ModelStore's own class and stand-ins for the other handles (tests/fakes.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import InProcess, add_model_folder, as_user
from media import SAMPLE_WAV

pytestmark = pytest.mark.anyio

USER, ADMIN = "user-key", "admin-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def keyed(tmp_path: Path) -> InProcess:
    (tmp_path / "keys").write_text(f"{USER}\n")
    (tmp_path / "admin-keys").write_text(f"# operators\n{ADMIN}\n")
    return InProcess(
        tmp_path, allow_anonymous=False, api_keys_file=tmp_path / "keys", admin_api_keys_file=tmp_path / "admin-keys"
    )


@pytest.fixture
def anonymous(tmp_path: Path) -> InProcess:
    return InProcess(tmp_path)


async def test_ordinary_keys_transcribe_and_only_admin_keys_manage(keyed: InProcess) -> None:
    async with keyed.client() as http:
        assert (await http.get("/v1/ping")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 401
        assert (await http.get("/v1/models", headers=as_user(USER))).status_code == 200
        assert (await http.get("/v1/models", headers=as_user(ADMIN))).status_code == 200
        for method, path, body in [
            ("POST", "/v1/models", {"path": "small.en"}),
            ("DELETE", "/v1/models/tiny.en", None),
            ("POST", "/transcription/job", {"path": "/data/a.mp3"}),
            ("GET", "/transcription/jobs", None),
            ("GET", "/stats", None),
            ("GET", "/smi", None),
        ]:
            refused = await http.request(method, path, json=body, headers=as_user(USER))
            assert refused.status_code == 403, (method, path, refused.text)
            assert "admin key" in refused.json()["reason"]
        assert keyed.models.downloads.active() == [] and keyed.models.get("tiny.en") is not None
        assert keyed.jobs.submitted == []
        stats = await http.get("/stats", headers=as_user(ADMIN))
        assert stats.status_code == 200
        leaving = await http.post("/v1/models", json={"path": "../outside"}, headers=as_user(ADMIN))
        assert leaving.status_code == 400, "an admin key passes; the path itself is refused"


async def test_with_admin_keys_alone_every_route_needs_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_SERVE_ADMIN_KEYS", f"other, {ADMIN}")
    app = InProcess(tmp_path, allow_anonymous=False)
    async with app.client() as http:
        assert (await http.get("/v1/models")).status_code == 401
        assert (await http.get("/v1/models", headers=as_user(USER))).status_code == 401
        assert (await http.get("/v1/models", headers=as_user(ADMIN))).status_code == 200


@pytest.mark.parametrize("name", ["TINY.EN", "tiny.en%20", "%20tiny.en", "Tiny.En"])
async def test_a_model_is_deleted_by_its_exact_id_only(anonymous: InProcess, name: str) -> None:
    add_model_folder(anonymous.models, "tiny.en-copy")
    async with anonymous.client() as http:
        response = await http.delete(f"/v1/models/{name}")
        assert response.status_code == 404, response.text
        assert (await http.get(f"/v1/models/{name}")).status_code == 404
    assert anonymous.models.get("tiny.en") is not None


async def test_the_default_model_cannot_be_deleted_and_its_absence_shows_in_health(tmp_path: Path) -> None:
    app = InProcess(tmp_path)
    async with app.client() as http:
        refused = await http.delete("/v1/models/tiny.en")
        assert refused.status_code == 409
        assert "default_model" in refused.json()["reason"]
        assert (await http.get("/v1/health")).status_code == 200
    elsewhere = InProcess(tmp_path / "other", default_model="small.en")
    async with elsewhere.client() as http:
        health = await http.get("/v1/health")
        assert health.status_code == 503
        assert "default_model 'small.en' is not in the model folder" in health.json()["reason"]


async def test_a_model_in_use_cannot_be_deleted_until_its_lease_is_returned(anonymous: InProcess) -> None:
    add_model_folder(anonymous.models, "copy")
    model, lease = anonymous.models.checkout("copy", 60.0)
    assert model is not None
    async with anonymous.client() as http:
        busy = await http.delete("/v1/models/copy")
        assert busy.status_code == 409
        assert "in use by 1 request" in busy.json()["reason"]
        anonymous.models.release(lease)
        assert (await http.delete("/v1/models/copy")).status_code == 200
        assert (await http.get("/v1/models/copy")).status_code == 404


async def test_a_lapsed_lease_no_longer_protects_the_model(anonymous: InProcess) -> None:
    add_model_folder(anonymous.models, "copy")
    anonymous.models.checkout("copy", 0.0)
    async with anonymous.client() as http:
        assert (await http.delete("/v1/models/copy")).status_code == 200


async def test_the_model_list_shows_no_server_folder(anonymous: InProcess) -> None:
    async with anonymous.client() as http:
        body = (await http.get("/v1/models")).json()
    assert [model["path"] for model in body["models"]] == ["tiny.en"]
    assert str(anonymous.settings.model_dir) not in json.dumps(body)


FOREIGN = "https://evil.example"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/models", {"content": b'{"path": "small.en"}', "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/v1/models", {"data": {"path": "small.en"}}),
        ("DELETE", "/v1/models/tiny.en", {}),
        ("POST", "/transcription/job", {"json": {"path": "/data/a.mp3"}}),
        ("POST", "/v1/audio/transcriptions", {"files": {"file": ("a.wav", b"RIFF")}, "data": {"model": "tiny.en"}}),
    ],
)
async def test_a_page_of_another_site_changes_nothing(anonymous: InProcess, method: str, path: str, kwargs: dict) -> None:
    async with anonymous.client() as http:
        headers = {"Origin": FOREIGN} | kwargs.pop("headers", {})
        response = await http.request(method, path, headers=headers, **kwargs)
    assert response.status_code == 403, response.text
    assert "cors_origins" in response.json()["reason"]
    assert anonymous.models.downloads.active() == [] and anonymous.jobs.submitted == []
    assert anonymous.models.get("tiny.en") is not None


async def test_the_services_own_pages_and_allowed_origins_may_post(tmp_path: Path) -> None:
    app = InProcess(tmp_path, cors_origins=["https://app.example"])
    async with app.client() as http:
        for origin in ("http://whisper.test", "https://app.example"):
            response = await http.post("/transcription/job", json={"path": "/data/a.mp3"}, headers={"Origin": origin})
            assert response.status_code == 202, (origin, response.text)
        read = await http.get("/v1/models", headers={"Origin": FOREIGN})
        assert read.status_code == 200, "reading is left to CORS: the browser keeps the answer from the page"


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
async def test_bodies_of_undocumented_types_are_refused_415(anonymous: InProcess, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with anonymous.client() as http:
        for path, body in [("/v1/models", b'{"path": "small.en"}'), ("/transcription/job", b'{"path": "/data/a.mp3"}')]:
            response = await http.post(path, content=body, headers=headers)
            assert response.status_code == 415, (path, response.text)
            assert "Content-Type" in response.json()["reason"]
    assert anonymous.models.downloads.active() == [] and anonymous.jobs.submitted == []


@pytest.mark.parametrize("path", ["/v1/models", "/transcription/job"])
async def test_json_nested_100000_deep_is_a_400(anonymous: InProcess, path: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    async with anonymous.client() as http:
        response = await http.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert "nested deeper than 32 levels" in response.json()["reason"]
        just_past = json.dumps({"path": "x", "deep": json.loads("[" * 40 + "]" * 40)})
        response = await http.post(path, content=just_past, headers={"Content-Type": "application/json"})
        assert response.status_code == 400


@pytest.mark.parametrize("field", ["num_speakers", "min_speakers", "max_speakers"])
@pytest.mark.parametrize("value", ["²", "١", "Ⅻ", "2.5", "-1"])
async def test_speaker_counts_that_are_not_ascii_numbers_are_a_400(anonymous: InProcess, field: str, value: str) -> None:
    async with anonymous.client() as http:
        response = await http.post(
            "/v1/audio/diarize", files={"file": ("a.wav", SAMPLE_WAV.read_bytes())}, data={"model": "tiny.en", field: value}
        )
    assert response.status_code == 400, response.text
    assert f"{field} must be a whole number" in response.json()["reason"]


async def trickled_file(chunks: int, pause_s: float) -> AsyncIterator[bytes]:
    yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    for _ in range(chunks):
        yield b"x"
        await asyncio.sleep(pause_s)


async def test_an_upload_that_stalls_is_cut_with_408(tmp_path: Path) -> None:
    app = InProcess(tmp_path, upload_idle_timeout_s=0.3)

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"path": '
        await asyncio.sleep(30)
        yield b'"small.en"}'

    async with app.client(timeout=10) as http:
        started = asyncio.get_running_loop().time()
        response = await http.post("/v1/models", content=stalls(), headers={"Content-Type": "application/json"})
        waited = asyncio.get_running_loop().time() - started
    assert response.status_code == 408, response.text
    assert "upload_idle_timeout_s" in response.json()["reason"]
    assert waited < 10, "the upload was cut, not read to its end"


async def test_an_upload_trickling_a_byte_at_a_time_is_cut_with_408(tmp_path: Path) -> None:
    app = InProcess(tmp_path, upload_idle_timeout_s=0.3, upload_min_bytes_per_s=1000)
    async with app.client(timeout=10) as http:
        response = await http.post(
            "/v1/audio/transcriptions",
            content=trickled_file(300, 0.02),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
    assert response.status_code == 408, response.text
    assert "upload_min_bytes_per_s" in response.json()["reason"]


async def test_an_upload_at_a_steady_pace_is_read_whole(tmp_path: Path) -> None:
    app = InProcess(tmp_path, upload_idle_timeout_s=0.3, upload_min_bytes_per_s=1000)
    body = b'{"path": "../outside"}' + b" " * 4000

    async def steady() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]
            await asyncio.sleep(0.05)

    async with app.client(timeout=10) as http:
        response = await http.post("/v1/models", content=steady(), headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "path" in response.json()["reason"], response.text


async def test_a_client_gone_mid_upload_is_one_info_line(anonymous: InProcess, caplog: pytest.LogCaptureFixture) -> None:
    messages = iter([{"type": "http.request", "body": b"--x\r\n", "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/audio/transcriptions",
        "raw_path": b"/v1/audio/transcriptions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"whisper.test"), (b"content-type", b"multipart/form-data; boundary=x")],
        "client": ("127.0.0.1", 5000),
        "server": ("whisper.test", 80),
    }
    with caplog.at_level(logging.INFO):
        await anonymous.app(scope, receive, send)
    problems = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert problems == [], [record.getMessage() for record in problems]
    assert any("went away" in record.getMessage() for record in caplog.records)


async def test_a_request_cancelled_by_serve_is_one_info_line_and_stays_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    from serve_app.api.http import CatchAll

    async def waits_for_a_decode(scope: dict, receive: object, send: object) -> None:
        await asyncio.sleep(60)

    async def call() -> None:
        await CatchAll(waits_for_a_decode)({"type": "http", "method": "POST", "path": "/v1/audio/transcriptions"}, None, None)  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        task.cancel()  # what Serve does when the client disconnects first
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [record.levelno for record in caplog.records] == [logging.INFO]
    assert "went away" in caplog.records[0].getMessage()


async def test_with_the_job_api_off_there_is_no_job_queue_and_its_routes_say_how_to_turn_it_on(tmp_path: Path) -> None:
    off = InProcess(tmp_path, job_queue=False)
    async with off.client() as http:
        for method, path, body in [
            ("POST", "/transcription/job", {"path": "/data/a.mp3"}),
            ("GET", "/transcription/job/j-1", None),
            ("DELETE", "/transcription/job/j-1", None),
            ("GET", "/transcription/jobs", None),
            ("GET", "/stats", None),
        ]:
            refused = await http.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "name job_media_folders and job_output_folders" in refused.json()["reason"]
