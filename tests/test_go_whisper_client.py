"""go-whisper's own client against the service: every request its pkg/client makes, replayed as
it sends them (tests/go_whisper_requests.py) under its default base /api/v1, and the edge's
checks under that prefix, which must be exactly those of /v1 (issue 15).

In-process (the real app and ModelStore class, a stand-in Transcriber, the local hub), and one
service test that replays the whole session against the real service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import go_whisper_requests as go
import httpx
import pytest
from fakes import add_model_folder, as_user
from hub_server import TINY_EN, HubServer, use_local_hub_only, whisper_repo
from media import SAMPLE_WAV
from openai_fakes import SEGMENTS, Transcribing

from serve_app.models.downloads import DownloadManager

pytestmark = pytest.mark.anyio

USER, ADMIN = "user-key", "admin-key"
SMALL_EN = "Systran/faster-whisper-small.en"  # what ggml-small.en-tdrz.bin maps to


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def local_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    use_local_hub_only(monkeypatch, tmp_path)
    with HubServer({TINY_EN: whisper_repo(), SMALL_EN: whisper_repo()}) as running:
        yield running


@pytest.fixture
def app(tmp_path: Path, local_hub: HubServer) -> Transcribing:
    running = Transcribing(tmp_path)
    add_model_folder(running.models, "base")
    running.models.downloads = DownloadManager(running.models.catalogue, endpoint=local_hub.url)
    return running


async def send(http: httpx.AsyncClient, request: dict) -> httpx.Response:
    return await http.send(http.build_request(**request))


async def test_every_call_of_go_whispers_client_works_under_api_v1(app: Transcribing) -> None:
    audio = SAMPLE_WAV.read_bytes()
    async with app.client() as http:
        assert (await send(http, go.ping())).status_code == 200

        listed = await send(http, go.list_models())
        assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
        assert {model["id"] for model in listed.json()["models"]} == {"base", "tiny.en"}
        assert all({"id", "object", "path", "created"} <= set(model) for model in listed.json()["models"])

        streamed = await send(http, go.download_model("ggml-tiny.en.bin", progress=True))
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = go.text_stream(streamed.text)
        assert [name for name, _ in events][-1] == "ok"
        assert all(json.loads(data)["status"].startswith("downloading") for name, data in events if name == "progress")
        model = json.loads(events[-1][1])
        assert model["id"] == "ggml-tiny.en" and model["object"] == "model" and model["created"] > 0

        whole = await send(http, go.download_model("ggml-small.en-tdrz.bin", progress=False))
        assert whole.status_code == 201 and whole.json()["id"] == "ggml-small.en-tdrz"
        again = await send(http, go.download_model("ggml-small.en-tdrz.bin", progress=False))
        assert again.status_code == 200

        for route, task in (("transcriptions", "transcribe"), ("translations", "translate")):
            answered = await send(
                http,
                go.transcribe(
                    "ggml-small.en-tdrz" if task == "transcribe" else "base",
                    audio,
                    file_name="jfk.wav",
                    language="en",
                    segment_size="5m0s",
                    response_format="json",
                    route=route,
                ),
            )
            assert answered.status_code == 200, answered.text
            body = answered.json()
            assert body["task"] == task and body["language"] == "en" and body["duration"] > 0
            assert [segment["text"] for segment in body["segments"]] == [segment.text for segment in SEGMENTS]
        # No file name (a reader that is not a file) and no options.
        bare = await send(http, go.transcribe("tiny.en", audio))
        assert bare.status_code == 200 and bare.json()["text"]

        assert (await send(http, go.delete_model("ggml-small.en-tdrz"))).status_code == 200
        assert "ggml-small.en-tdrz" not in {model["id"] for model in (await send(http, go.list_models())).json()["models"]}
    assert [(method, model.split("@")[0]) for method, model, _ in app.transcriber.calls] == [
        ("transcribe", "ggml-small.en-tdrz"),
        ("transcribe", "base"),
        ("transcribe", "tiny.en"),
    ]


async def test_a_download_while_the_hub_is_down_says_which_settings_to_check(app: Transcribing, local_hub: HubServer) -> None:
    local_hub.__exit__(None, None, None)  # stopped: its port is closed
    hub = local_hub
    async with app.client() as http:
        refused = await send(http, go.download_model("ggml-small.en.bin", progress=False))
        assert refused.status_code == 502
        assert f"cannot reach the hub at {hub.url} (HF_ENDPOINT)" in refused.json()["reason"]
        assert "HF_HUB_OFFLINE" in refused.json()["reason"]
        # With progress asked for, a failure before the first byte is still an HTTP status.
        streamed = await send(http, go.download_model("ggml-small.en.bin", progress=True))
        assert streamed.status_code == 502 and "HF_ENDPOINT" in streamed.json()["reason"]


@pytest.fixture
def keyed(tmp_path: Path) -> Transcribing:
    (tmp_path / "keys").write_text(f"{USER}\n")
    (tmp_path / "admin-keys").write_text(f"{ADMIN}\n")
    return Transcribing(
        tmp_path, allow_anonymous=False, api_keys_file=tmp_path / "keys", admin_api_keys_file=tmp_path / "admin-keys"
    )


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_the_edge_checks_the_same_under_both_prefixes(keyed: Transcribing, prefix: str) -> None:
    """Keys, admin routes, open paths, foreign pages and content types: /api/v1 is /v1."""
    async with keyed.client() as http:
        assert (await http.get(f"{prefix}/ping")).status_code == 200
        assert (await http.get(f"{prefix}/health")).status_code == 200
        assert (await http.get(f"{prefix}/models")).status_code == 401
        assert (await http.get(f"{prefix}/models/tiny.en")).status_code == 401
        no_key = await http.post(
            f"{prefix}/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "tiny.en"}
        )
        assert no_key.status_code == 401
        assert (await http.get(f"{prefix}/models", headers=as_user(USER))).status_code == 200
        for method, path, body in [
            ("POST", f"{prefix}/models", {"path": "small.en"}),
            ("DELETE", f"{prefix}/models/tiny.en", None),
        ]:
            refused = await http.request(method, path, json=body, headers=as_user(USER))
            assert refused.status_code == 403, (method, path, refused.text)
            assert "admin key" in refused.json()["reason"]
        foreign = await http.post(
            f"{prefix}/audio/transcriptions",
            files={"file": SAMPLE_WAV.open("rb")},
            data={"model": "tiny.en"},
            headers=as_user(ADMIN) | {"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403 and "evil.example" in foreign.json()["reason"]
        plain = await http.post(
            f"{prefix}/models", content=b'{"path": "small.en"}', headers=as_user(ADMIN) | {"Content-Type": "text/plain"}
        )
        assert plain.status_code == 415
        not_a_form = await http.post(f"{prefix}/audio/transcriptions", json={"model": "tiny.en"}, headers=as_user(USER))
        assert not_a_form.status_code == 400 and "multipart/form-data" in not_a_form.json()["reason"]
        transcribed = await http.post(
            f"{prefix}/audio/transcriptions",
            files={"file": SAMPLE_WAV.open("rb")},
            data={"model": "tiny.en"},
            headers=as_user(USER),
        )
        assert transcribed.status_code == 200
    assert keyed.models.downloads.active() == [] and keyed.models.get("tiny.en") is not None


@pytest.mark.parametrize(
    "path",
    ["/api/transcription/jobs", "/api/stats", "/api/smi", "/api/openapi.json", "/api/v1", "/api/v2/models", "/api/api/v1/models"],
)
async def test_only_v1_has_the_api_alias(keyed: Transcribing, path: str) -> None:
    async with keyed.client() as http:
        response = await http.get(path, headers=as_user(ADMIN))
    assert response.status_code == 404
    assert response.json()["reason"] == f"nothing is served at {path}"


async def test_errors_under_the_alias_name_the_path_the_client_asked(keyed: Transcribing) -> None:
    async with keyed.client() as http:
        missing = await http.get("/api/v1/nothing", headers=as_user(USER))
        wrong = await http.put("/api/v1/models", headers=as_user(USER))
    assert missing.status_code == 404 and missing.json()["reason"] == "nothing is served at /api/v1/nothing"
    assert wrong.status_code == 405 and "/api/v1/models" in wrong.json()["reason"]


@pytest.mark.slow
def test_go_whispers_client_against_the_service(service, hub: HubServer) -> None:
    """The whole session of go-whisper's client, sent chunked as Go sends it, to the real service
    (whose local hub serves tiny.en's files as small.en's, for ggml-small.en-tdrz.bin)."""
    hub.repos.setdefault(SMALL_EN, whisper_repo())
    audio = SAMPLE_WAV.read_bytes()
    with httpx.Client(base_url=service.url, timeout=300) as http:
        assert http.request(**go.ping()).status_code == 200
        models = http.request(**go.list_models()).json()["models"]
        assert {"tiny.en", "base"} <= {model["id"] for model in models}
        events = go.text_stream(http.request(**go.download_model("ggml-small.en-tdrz.bin", progress=True)).text)
        assert events[-1][0] == "ok", events
        assert json.loads(events[-1][1])["id"] == "ggml-small.en-tdrz"
        transcribed = http.request(
            **go.transcribe(
                "ggml-small.en-tdrz", audio, file_name="sample.wav", segment_size="5m0s", response_format="json", chunked=True
            )
        )
        assert transcribed.status_code == 200, transcribed.text
        assert "Chicago" in transcribed.json()["text"]
        translated = http.request(**go.transcribe("base", audio, file_name="sample.wav", route="translations", chunked=True))
        assert translated.status_code == 200 and translated.json()["task"] == "translate", translated.text
        assert http.request(**go.delete_model("ggml-small.en-tdrz")).status_code == 200
