"""POST/DELETE /v1/models through Ray Serve, downloading with the real huggingface_hub client
from the local hub-compatible server (tests/hub_server.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from conftest import HUB_BROKEN, HUB_COPY, HUB_HELD, HUB_SLOW
from httpx_sse import EventSource
from hub_server import CRAFTED, PIPELINE, HubServer
from media import SAMPLE_WAV

pytestmark = pytest.mark.slow


def listed(client: httpx.Client) -> set[str]:
    return {model["id"] for model in client.get("/v1/models").json()["models"]}


def leftovers(service) -> list[str]:
    return sorted(p.name for p in service.model_dir.iterdir() if p.name.startswith(".partial"))


def test_download_list_transcribe_delete(client: httpx.Client, service) -> None:
    created = client.post("/v1/models", json={"path": HUB_COPY})
    assert created.status_code == 201, created.text
    model = created.json()
    assert model["id"] == "whisper-tiny-copy" and model["object"] == "model" and model["kind"] == "transcription"
    assert model["source"] == f"hub:{HUB_COPY}"
    assert sorted(p.name for p in (service.model_dir / model["path"]).iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
        "whisper-serve.json",
    ]
    assert "whisper-tiny-copy" in listed(client)
    assert client.get(f"/v1/models/{HUB_COPY}").json()["id"] == "whisper-tiny-copy"

    again = client.post("/v1/models", data={"path": HUB_COPY})
    assert again.status_code == 200

    heard = client.post("/v1/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "whisper-tiny-copy"})
    assert heard.status_code == 200 and "Chicago" in heard.json()["text"]

    deleted = client.delete("/v1/models/whisper-tiny-copy")
    assert deleted.status_code == 200 and deleted.json()["id"] == "whisper-tiny-copy"
    assert not (service.model_dir / model["path"]).exists()
    assert client.get("/v1/models/whisper-tiny-copy").status_code == 404
    assert client.delete("/v1/models/whisper-tiny-copy").status_code == 404
    gone = client.post("/v1/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "whisper-tiny-copy"})
    assert gone.status_code == 404


def test_the_stream_shows_progress_then_ok(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/models", params={"stream": "true"}, files={"path": (None, HUB_SLOW)}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [(event.event, event.data) for event in EventSource(response).iter_sse()]
    assert events[0][0] == "ping"
    progress = [json.loads(data) for name, data in events if name == "progress"]
    assert len(progress) >= 2, events
    completed = [p["completed"] for p in progress]
    assert completed == sorted(completed) and completed[0] < completed[-1]
    assert all(p["total"] == progress[0]["total"] for p in progress)
    assert events[-1][0] == "ok"
    model = json.loads(events[-1][1])
    assert model["id"] in listed(client)
    client.delete(f"/v1/models/{model['id']}")


def test_two_requests_for_one_model_download_it_once(client: httpx.Client, service, hub: HubServer) -> None:
    repo = hub.repos[HUB_HELD]
    answers: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(base_url=service.url, timeout=120) as other:
            answers.append(other.post("/v1/models", json={"path": HUB_HELD}))

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for asker in askers:
        asker.start()
    assert repo.waiting.wait(60), "the download never started"
    repo.hold.set()
    for asker in askers:
        asker.join(120)
    assert sorted(a.status_code for a in answers) == [201, 201], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert hub.served(HUB_HELD, "model.bin") == 1
    client.delete(f"/v1/models/{answers[0].json()['id']}")


def test_a_broken_transfer_is_502_and_leaves_nothing(client: httpx.Client, service) -> None:
    before = listed(client)
    response = client.post("/v1/models", json={"path": HUB_BROKEN})
    assert response.status_code == 502, response.text
    assert listed(client) == before
    assert leftovers(service) == []
    assert not (service.model_dir / "whisper-tiny-broken").exists()


def test_a_broken_transfer_on_a_stream_ends_with_error(client: httpx.Client, service) -> None:
    with client.stream("POST", "/v1/models?stream=true", json={"path": HUB_BROKEN}) as response:
        events = [(event.event, event.data) for event in EventSource(response).iter_sse()]
    assert events[-1][0] == "error"
    assert isinstance(json.loads(events[-1][1]), str)
    assert leftovers(service) == []


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"path": "test-org/no-such-repo"}, 404, "no-such-repo"),
        ({"path": PIPELINE}, 401, "HF_TOKEN"),
        ({"path": "../../etc/passwd"}, 400, "outside the model folder"),
        ({}, 400, "missing path"),
        ({"path": "   "}, 400, "missing path"),
    ],
)
def test_refusals(client: httpx.Client, body: dict, status: int, reason: str) -> None:
    before = listed(client)
    response = client.post("/v1/models", json=body)
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]
    assert listed(client) == before


def test_a_refusal_known_at_once_is_a_status_even_when_streaming(client: httpx.Client) -> None:
    response = client.post("/v1/models?stream=true", json={"path": "../../etc/passwd"})
    assert response.status_code == 400


def test_a_pipeline_whose_checkpoint_runs_code_is_refused_and_runs_nothing(client: httpx.Client, pickle_marker: Path) -> None:
    created = client.post("/v1/models", json={"path": CRAFTED})
    assert created.status_code == 201, created.text
    model = created.json()
    assert model["kind"] == "diarization" and model["source"] == f"hub:{CRAFTED}"
    try:
        response = client.post(
            "/v1/audio/diarize",
            files={"file": SAMPLE_WAV.open("rb")},
            data={"model": "tiny.en", "diarization_model": model["id"]},
        )
        assert response.status_code == 403, response.text
        reason = response.json()["reason"]
        assert "cannot be read without running its pickle" in reason
        assert f"if you trust the repository {CRAFTED}, add it to the setting trusted_model_repos" in reason
        assert not pickle_marker.exists()
    finally:
        client.delete(f"/v1/models/{model['id']}")
