"""Cross-request batching with the real engine: a request's transcript does not depend on what
it was batched with, and concurrent requests each get their own transcript back."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from media import SAMPLE_WAV, speak, word_error_rate

from serve_app.engine.audio import decode_audio
from serve_app.engine.whisper import WhisperEngine
from serve_app.options import DecodeOptions
from serve_app.transcript import Transcript

pytestmark = pytest.mark.slow

PASSAGES = {
    "lighthouse": "The old lighthouse stands on a rock at the end of the harbour, and its keeper climbs the stairs every evening.",
    "budget": "On Tuesday the committee met to discuss the budget, and agreed to spend more on schools and roads.",
    "orchard": "In the orchard behind the farm, apples and pears ripen slowly in the warm September sun.",
    "railway": "The night train to the capital leaves at eleven, and the passengers sleep while it crosses the mountains.",
}


@pytest.fixture(scope="module")
def clips(media_dir: Path) -> dict[str, Path]:
    return {name: speak(text, media_dir / f"batching-{name}.wav", voice="en-us", speed=140) for name, text in PASSAGES.items()}


@pytest.fixture(scope="module")
def tiny_en(service) -> str:
    """The folder of the service's tiny.en."""
    return str(service.model_dir / "tiny.en")


def as_compared(transcript: Transcript) -> list[tuple]:
    return [
        (segment.start, segment.end, segment.text, [(w.start, w.end, w.word) for w in segment.words or ()])
        for segment in transcript.segments
    ]


@pytest.mark.parametrize("words", [False, True], ids=["segments", "words"])
def test_batched_and_unbatched_decoding_give_the_same_segments(
    tiny_en: str, clips: dict[str, Path], long_english_wav: Path, words: bool
) -> None:
    audios = [decode_audio(path.open("rb")) for path in [SAMPLE_WAV, long_english_wav, *clips.values()]]
    options = DecodeOptions(word_timestamps=words)
    unbatched = WhisperEngine(batch_audio_seconds=30)  # one chunk a batch
    batched = WhisperEngine(batch_audio_seconds=240)
    try:
        alone_model, together_model = unbatched.load(tiny_en), batched.load(tiny_en)
        alone = [unbatched.transcribe(audio, alone_model, options) for audio in audios]
        with ThreadPoolExecutor(len(audios)) as pool:
            together = list(pool.map(lambda audio: batched.transcribe(audio, together_model, options), audios))
        assert unbatched.batcher.batches == unbatched.batcher.chunks
        assert batched.batcher.batches < batched.batcher.chunks, "no two chunks were ever decoded together"
    finally:
        unbatched.close()
        batched.close()
    for one, other in zip(alone, together):
        assert one.segments, "nothing was transcribed"
        assert as_compared(one) == as_compared(other)
    assert word_error_rate(" ".join(PASSAGES.values()), " ".join(t.text for t in alone[2:])) < 0.2


def post(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as media:
        response = client.post("/v1/audio/transcriptions", files={"file": media}, data={"model": "tiny.en"})
    assert response.status_code == 200, response.text
    return response.json()["text"]


def streamed(client: httpx.Client, path: Path) -> str:
    with (
        path.open("rb") as media,
        connect_sse(
            client, "POST", "/v1/audio/transcriptions", files={"file": media}, data={"model": "tiny.en", "stream": "true"}
        ) as source,
    ):
        events = [(event.event, event.data) for event in source.iter_sse() if event.event != "ping"]
    assert events[-1][0] == "ok", events[-1]
    return "".join(json.loads(data)["text"] for name, data in events if name == "segment")


def test_concurrent_requests_each_get_their_own_transcript(service, clips: dict[str, Path]) -> None:
    requests = [(name, send) for name in PASSAGES for send in (post, streamed)]
    with httpx.Client(base_url=service.url, timeout=300) as client, ThreadPoolExecutor(len(requests)) as pool:
        texts = list(pool.map(lambda request: request[1](client, clips[request[0]]), requests))
    for (name, send), text in zip(requests, texts):
        own = word_error_rate(PASSAGES[name], text)
        assert own < 0.4, f"{send.__name__} of {name!r} came back as {text!r}"
        for other in PASSAGES.keys() - {name}:
            assert word_error_rate(PASSAGES[other], text) > 0.6, f"{name!r} came back with {other!r} in it: {text!r}"
