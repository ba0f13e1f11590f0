"""POST /v1/audio/transcriptions and /translations through Ray Serve, with real models and audio."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from faster_whisper import WhisperModel
from media import SAMPLE_WAV, reference_words, word_error_rate
from subtitles import parse_srt, parse_vtt

pytestmark = pytest.mark.slow


def post(client: httpx.Client, path: Path, *, route: str = "transcriptions", **fields: str) -> httpx.Response:
    with open(path, "rb") as media:
        return client.post(f"/v1/audio/{route}", files={"file": (path.name, media)}, data=fields)


@pytest.fixture(scope="module")
def sample_json(service) -> dict:
    with httpx.Client(base_url=service.url, timeout=120) as client:
        response = post(client, SAMPLE_WAV, model="tiny.en")
    assert response.status_code == 200, response.text
    return response.json()


def test_sample_word_error_rate_is_no_worse_than_faster_whisper_in_process(service, sample_json: dict) -> None:
    engine = WhisperModel(str(service.model_dir / "tiny.en"), device="cpu", compute_type="int8", cpu_threads=1)
    segments, _ = engine.transcribe(str(SAMPLE_WAV), beam_size=5)
    in_process = word_error_rate(reference_words(), "".join(segment.text for segment in segments))
    served = word_error_rate(reference_words(), sample_json["text"])
    assert served <= in_process + 1e-9, f"service WER {served:.3f} vs in-process {in_process:.3f}"
    assert served < 0.4


def test_json_body_has_the_go_whisper_shape(sample_json: dict) -> None:
    assert sample_json["task"] == "transcribe"
    assert sample_json["language"] == "en"
    assert sample_json["duration"] == pytest.approx(30.0, abs=0.1)
    assert "Chicago" in sample_json["text"]
    segments = sample_json["segments"]
    assert [segment["id"] for segment in segments] == list(range(len(segments)))
    assert all(0 <= s["start"] < s["end"] <= sample_json["duration"] for s in segments)
    assert " ".join(s["text"].strip() for s in segments) == sample_json["text"]


def test_text_srt_and_vtt_say_what_json_says(client: httpx.Client, sample_json: dict) -> None:
    text = post(client, SAMPLE_WAV, model="tiny.en", response_format="text")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.strip() == sample_json["text"]

    expected = [(s["start"], s["end"], s["text"].strip()) for s in sample_json["segments"]]

    subrip = post(client, SAMPLE_WAV, model="tiny.en", response_format="srt")
    assert subrip.headers["content-type"].startswith("application/x-subrip")
    assert [(c.start, c.end, c.text) for c in parse_srt(subrip.text)] == expected

    vtt = post(client, SAMPLE_WAV, model="tiny.en", response_format="vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert [(c.start, c.end, c.text) for c in parse_vtt(vtt.text)] == expected


def test_verbose_json_with_word_timestamps(client: httpx.Client) -> None:
    response = post(client, SAMPLE_WAV, model="tiny.en", response_format="verbose_json", **{"timestamp_granularities[]": "word"})
    assert response.status_code == 200, response.text
    body = response.json()
    segment = body["segments"][0]
    for key in ("seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"):
        assert key in segment
    words = body["words"]
    assert any(w["word"].strip(" ,.?!") == "Chicago" for w in words)
    assert all(w["start"] <= w["end"] for w in words)
    assert words == sorted(words, key=lambda w: w["start"])
    assert words[-1]["end"] <= body["duration"] + 1


@pytest.mark.parametrize("fixture", ["sample_mp3", "sample_video"])
def test_same_call_in_another_container(client: httpx.Client, sample_json: dict, fixture: str, request) -> None:
    response = post(client, request.getfixturevalue(fixture), model="tiny.en")
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(30.0, abs=0.1)
    assert word_error_rate(sample_json["text"], response.json()["text"]) < 0.15


def test_german_is_detected_and_translated_to_english(client: httpx.Client, german_wav: Path) -> None:
    heard = post(client, german_wav, model="base")
    assert heard.status_code == 200, heard.text
    assert heard.json()["language"] == "de"
    assert "Morgen" in heard.json()["text"]

    translated = post(client, german_wav, route="translations", model="base")
    assert translated.status_code == 200, translated.text
    body = translated.json()
    assert body["task"] == "translate"
    english = body["text"].lower()
    assert sum(word in english for word in ("morning", "weather", "dog", "park", "coffee")) >= 4, english


def test_language_given_is_used_and_reported(client: httpx.Client, german_wav: Path) -> None:
    response = post(client, german_wav, model="base", language="de", response_format="verbose_json")
    assert response.json()["language"] == "de"


def test_openai_fields_are_accepted(client: httpx.Client) -> None:
    response = post(client, SAMPLE_WAV, model="whisper-1", prompt="Diane, Sheila, Chicago, New Jersey.", temperature="0.2")
    assert response.status_code == 200, response.text
    assert word_error_rate(reference_words(), response.json()["text"]) < 0.5
