"""Transcripts streamed as server-sent events, read with an SSE client (httpx-sse)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import EventSource, connect_sse
from media import SAMPLE_WAV
from ray import serve
from subtitles import parse_srt, parse_vtt

pytestmark = pytest.mark.slow


def stream(
    client: httpx.Client, path: Path, *, route: str = "transcriptions", params=None, headers=None, **fields
) -> list[tuple[str, str]]:
    """The events of a streamed request; by default `?stream=true`, without an Accept header."""
    params = {"stream": "true"} if params is None else params
    with (
        open(path, "rb") as media,
        client.stream(
            "POST", f"/v1/audio/{route}", files={"file": media}, data=fields, params=params, headers=headers
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream"), response.read()
        return [(event.event, event.data) for event in EventSource(response).iter_sse()]


def without_pings(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [event for event in events if event[0] != "ping"]


def test_events_come_in_order_and_make_the_non_streaming_transcript(client: httpx.Client) -> None:
    whole = client.post("/v1/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "tiny.en"}).json()
    events = stream(client, SAMPLE_WAV, model="tiny.en")
    assert events[0] == ("ping", "")
    names = [name for name, _ in without_pings(events)]
    assert names == ["task"] + ["segment"] * len(whole["segments"]) + ["ok"]
    task = json.loads(without_pings(events)[0][1])
    assert task == {"task": "transcribe", "language": "en", "duration": whole["duration"]}
    segments = [json.loads(data) for name, data in events if name == "segment"]
    assert segments == whole["segments"]


def test_verbose_json_segments_carry_decoder_fields_and_words(client: httpx.Client) -> None:
    events = stream(client, SAMPLE_WAV, model="tiny.en", response_format="verbose_json", **{"timestamp_granularities[]": "word"})
    segments = [json.loads(data) for name, data in events if name == "segment"]
    assert all("avg_logprob" in s and "tokens" in s for s in segments)
    words = [w["word"].strip(" ,.?") for s in segments for w in s["words"]]
    assert "Chicago" in words


@pytest.mark.parametrize(("response_format", "parse"), [("srt", parse_srt), ("vtt", parse_vtt), ("text", None)])
def test_text_formats_stream_cues_that_concatenate_to_the_whole_file(client: httpx.Client, response_format: str, parse) -> None:
    whole = client.post(
        "/v1/audio/transcriptions",
        files={"file": SAMPLE_WAV.open("rb")},
        data={"model": "tiny.en", "response_format": response_format},
    ).text
    events = stream(client, SAMPLE_WAV, model="tiny.en", response_format=response_format)
    joined = "".join(json.loads(data) for name, data in events if name == "segment")
    if parse is None:
        assert " ".join(joined.split()) == whole.strip()
    else:
        assert parse(joined) == parse(whole)
        assert joined == whole


@pytest.mark.parametrize(
    ("params", "headers", "fields", "last"),
    [
        ({}, {"Accept": "text/event-stream"}, {}, "ok"),
        ({}, None, {"stream": "true"}, "message"),  # OpenAI's way: OpenAI's events (test_openai_sdk.py)
        ({"stream": "true"}, None, {"stream": "true"}, "ok"),
    ],
)
def test_a_stream_is_asked_for_by_header_or_form_field(client: httpx.Client, params, headers, fields, last) -> None:
    events = stream(client, SAMPLE_WAV, params=params, headers=headers, model="tiny.en", **fields)
    assert without_pings(events)[-1][0] == last


def test_a_translation_streams_with_its_task(client: httpx.Client, german_wav: Path) -> None:
    events = without_pings(stream(client, german_wav, route="translations", model="base"))
    assert json.loads(events[0][1])["task"] == "translate"
    english = " ".join(json.loads(data)["text"] for name, data in events if name == "segment").lower()
    assert "weather" in english


@pytest.mark.parametrize(("fields", "status"), [({"model": "nope"}, 404), ({"model": "tiny.en", "response_format": "doc"}, 400)])
def test_refusals_come_before_the_stream_with_their_status(client: httpx.Client, fields: dict, status: int) -> None:
    response = client.post("/v1/audio/transcriptions?stream=true", files={"file": SAMPLE_WAV.open("rb")}, data=fields)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"


def transcriber_state() -> dict:
    return serve.get_deployment_handle("Transcriber", app_name="whisper").describe.remote().result()


def test_a_client_that_disconnects_stops_the_decoding(client: httpx.Client, long_english_wav: Path) -> None:
    total = len(
        client.post("/v1/audio/transcriptions", files={"file": long_english_wav.open("rb")}, data={"model": "tiny.en"}).json()[
            "segments"
        ]
    )
    assert total >= 6, "the clip is too short to show a stream stopped part way"
    before = transcriber_state()["segments_decoded"]

    with (
        long_english_wav.open("rb") as media,
        connect_sse(
            client,
            "POST",
            "/v1/audio/transcriptions",
            files={"file": media},
            data={"model": "tiny.en"},
            params={"stream": "true"},
        ) as source,
    ):
        for event in source.iter_sse():
            if event.event == "segment":
                break  # leaving the block closes the connection after the first segment

    deadline = time.monotonic() + 60
    while (state := transcriber_state())["active_streams"] > 0:
        assert time.monotonic() < deadline, f"the decoding went on after the client left: {state}"
        time.sleep(0.2)
    decoded = state["segments_decoded"] - before
    assert decoded < total, f"all {total} segments were decoded for a client that left after the first"

    again = client.post("/v1/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "tiny.en"})
    assert again.status_code == 200
