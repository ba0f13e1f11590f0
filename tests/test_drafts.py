"""Drafts (DecodeOptions.draft, a live session's partial decodes) decode in an encoder window
fitted to their audio, with the real engine (tiny.en, in-process) on espeak-ng speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel
from media import speak, word_error_rate

from serve_app.engine import decoding
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.engine.decoding import (
    DRAFT_WINDOW_S,
    N_FRAMES,
    Chunk,
    DecodeKey,
    decode_batch,
    encoder_frames,
)
from serve_app.models.catalogue import ModelInfo

SAID = (
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition systems turn spoken language into text.",
    "They are used for subtitles, meeting notes, voice assistants and the search of large audio archives.",
    "His daughter feeds the hens and carries the milk to the kitchen.",
)


def chunk(seconds: float) -> Chunk:
    source = np.zeros(round(seconds * SAMPLE_RATE), np.float32)
    return Chunk(source, ((0, len(source)),), 0.0)


@pytest.fixture(scope="module")
def whisper(tiny_en: ModelInfo) -> WhisperModel:
    return WhisperModel(tiny_en.path, device="cpu", compute_type="int8", cpu_threads=1)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Each sentence of SAID as espeak-ng reads it (3.3 to 6.8 s)."""
    folder = tmp_path_factory.mktemp("draft")
    audio = []
    for number, said in enumerate(SAID):
        with Path(speak(said, folder / f"{number}.wav")).open("rb") as media:
            audio.append(decode_audio(media))
    return audio


def key(whisper: WhisperModel, *, draft: bool) -> DecodeKey:
    return DecodeKey(whisper, "transcribe", "en", None, 0.0, False, 5, draft=draft)


def test_the_window_fits_a_drafts_audio(whisper: WhisperModel) -> None:
    assert encoder_frames(key(whisper, draft=False), [chunk(1.0)]) == N_FRAMES == 3000
    draft = key(whisper, draft=True)
    assert encoder_frames(draft, [chunk(1.0)]) == DRAFT_WINDOW_S * 100 == 500  # the least window
    assert encoder_frames(draft, [chunk(4.0)]) == 650  # its audio and 2.5 s
    assert encoder_frames(draft, [chunk(1.0), chunk(6.01)]) == 852  # the batch's longest; even
    assert encoder_frames(draft, [chunk(29.0)]) == N_FRAMES


def test_drafts_hear_the_words_in_their_short_windows(
    whisper: WhisperModel, sentences: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heard less well than in Whisper's whole window, sentence by sentence ("roundfark stump" for
    "brown fox jumps"), but as well over these four: 0.18 WER, against 0.24 in whole windows."""
    windows: list[int] = []
    encode = whisper.encode
    monkeypatch.setattr(whisper, "encode", lambda features: windows.append(features.shape[-1]) or encode(features))
    texts = []
    for audio in sentences:
        source = Chunk(audio, ((0, len(audio)),), 0.0)
        [segments] = decode_batch(whisper, key(whisper, draft=True), [source])
        texts.append(" ".join(segment["text"].strip() for segment in segments))
        assert windows[-1] == encoder_frames(key(whisper, draft=True), [source]) < 1000, windows
    assert word_error_rate(" ".join(SAID), " ".join(texts)) <= 0.25, texts


def test_a_draft_stops_at_its_token_limit(
    whisper: WhisperModel, sentences: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a short window Whisper may repeat itself to its 448 tokens: a draft stops at
    DRAFT_TOKENS_PER_S a second of its window (here made 2, for 10 tokens in 5 s)."""
    monkeypatch.setattr(decoding, "DRAFT_TOKENS_PER_S", 2)
    audio = sentences[0]
    source = Chunk(audio, ((0, len(audio)),), 0.0)
    [segments] = decode_batch(whisper, key(whisper, draft=True), [source], passes=0)
    assert 0 < sum(len(segment["tokens"]) for segment in segments) <= 10, segments
    [whole] = decode_batch(whisper, key(whisper, draft=False), [source], passes=0)
    assert sum(len(segment["tokens"]) for segment in whole) > 10
