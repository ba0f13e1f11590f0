"""WhisperClient: the running app called from this Ray driver through its handle, not HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from media import SAMPLE_WAV
from subtitles import parse_srt

from serve_app.client import WhisperClient
from serve_app.errors import BadRequest, NotFound

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def whisper(service) -> WhisperClient:
    # The test process started Ray for the service, so it is a driver of the app's cluster.
    return WhisperClient()


def over_http(client: httpx.Client, **fields: str) -> httpx.Response:
    with open(SAMPLE_WAV, "rb") as media:
        response = client.post("/v1/audio/transcriptions", files={"file": ("sample.wav", media)}, data=fields)
    assert response.status_code == 200, response.text
    return response


def test_json_is_the_body_http_sends(whisper: WhisperClient, client: httpx.Client) -> None:
    body = whisper.transcribe(SAMPLE_WAV, model="tiny.en")
    assert isinstance(body, dict)
    assert body == over_http(client, model="tiny.en").json()
    assert body["language"] == "en"
    assert "Chicago" in body["text"]


def test_srt_is_the_text_http_sends(whisper: WhisperClient, client: httpx.Client) -> None:
    subtitles = whisper.transcribe(SAMPLE_WAV.read_bytes(), model="tiny.en", response_format="srt")
    assert isinstance(subtitles, str)
    assert subtitles == over_http(client, model="tiny.en", response_format="srt").text
    cues = parse_srt(subtitles)
    assert cues and cues[-1].end <= 30.1
    assert "Chicago" in " ".join(cue.text for cue in cues)


def test_an_open_file_and_the_async_call(whisper: WhisperClient) -> None:
    async def both() -> list:
        with open(SAMPLE_WAV, "rb") as media:
            first = whisper.transcribe_async(media, model="tiny.en", response_format="text")
            return await asyncio.gather(first, whisper.transcribe_async(SAMPLE_WAV, model="tiny.en", response_format="text"))

    text, again = asyncio.run(both())
    assert text == again
    assert "Chicago" in text


def test_an_unknown_model_is_not_found(whisper: WhisperClient) -> None:
    with pytest.raises(NotFound, match="model not found: 'large-v9'") as refused:
        whisper.transcribe(SAMPLE_WAV, model="large-v9")
    assert type(refused.value) is NotFound  # the service's own error, not Ray's wrapper of it


def test_a_bad_field_is_the_routes_bad_request(whisper: WhisperClient) -> None:
    with pytest.raises(BadRequest, match="English-only"):
        whisper.transcribe(SAMPLE_WAV, model="tiny.en", language="de")
    with pytest.raises(BadRequest, match="response_format"):
        whisper.transcribe(SAMPLE_WAV, model="tiny.en", response_format="docx")
