"""The official `openai` SDK, pointed at the service, transcribes the sample call."""

from __future__ import annotations

import pytest
import srt
from media import SAMPLE_WAV
from openai import OpenAI

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
