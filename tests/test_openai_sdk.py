"""The official `openai` SDK, pointed at the service, transcribes the sample call."""

from __future__ import annotations

from pathlib import Path

import pytest
import srt
from media import SAMPLE_WAV
from openai import OpenAI
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

pytestmark = pytest.mark.slow


@pytest.fixture
def openai_client(service) -> OpenAI:
    return OpenAI(base_url=f"{service.url}/v1", api_key="not-checked", max_retries=0)


def test_json(openai_client: OpenAI) -> None:
    with open(SAMPLE_WAV, "rb") as audio:
        transcription = openai_client.audio.transcriptions.create(model="tiny.en", file=audio)
    assert "Chicago" in transcription.text


def test_text(openai_client: OpenAI) -> None:
    with open(SAMPLE_WAV, "rb") as audio:
        text = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert "New Jersey" in text


def test_srt(openai_client: OpenAI) -> None:
    with open(SAMPLE_WAV, "rb") as audio:
        subtitles = openai_client.audio.transcriptions.create(model="tiny.en", file=audio, response_format="srt")
    cues = list(srt.parse(subtitles))
    assert len(cues) >= 3
    assert cues[-1].end.total_seconds() <= 31


def test_an_error_reaches_the_sdk_with_its_reason(openai_client: OpenAI) -> None:
    import openai

    with open(SAMPLE_WAV, "rb") as audio, pytest.raises(openai.NotFoundError) as raised:
        openai_client.audio.transcriptions.create(model="large-v9", file=audio)
    assert "model not found" in str(raised.value)


def test_a_stream_of_openais_events_makes_the_same_text(openai_client: OpenAI) -> None:
    with open(SAMPLE_WAV, "rb") as audio:
        whole = openai_client.audio.transcriptions.create(model="tiny.en", file=audio)
    with open(SAMPLE_WAV, "rb") as audio:
        events = list(openai_client.audio.transcriptions.create(model="tiny.en", file=audio, stream=True))
    deltas, done = events[:-1], events[-1]
    assert len(deltas) >= 3 and all(isinstance(event, TranscriptionTextDeltaEvent) for event in deltas)
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert "".join(event.delta for event in deltas) == done.text == whole.text
    assert whole.usage is not None and whole.usage.type == "duration" and whole.usage.seconds == pytest.approx(30, abs=0.5)


def test_whisper_1_translates_as_in_openais_example(openai_client: OpenAI, german_wav: Path) -> None:
    with open(german_wav, "rb") as audio:
        translation = openai_client.audio.translations.create(model="whisper-1", file=audio)
    assert "weather" in translation.text.lower()


def test_the_model_list_through_the_sdk(openai_client: OpenAI) -> None:
    ids = {model.id for model in openai_client.models.list()}
    assert {"tiny.en", "base"} <= ids
    assert openai_client.models.retrieve("whisper-1").id == "base"
