"""A live session's decodes hear encoder windows fitted to their audio (DecodeOptions.window):
its drafts and its completed texts, with the real engine (tiny.en, in-process) on espeak-ng
speech."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel
from media import speak, word_error_rate

from serve_app.api.realtime.session import DRAFT_WINDOW, UTTERANCE_WINDOW
from serve_app.engine import decoding
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.engine.decoding import N_FRAMES, Chunk, DecodeKey, decode_batch, encoder_frames
from serve_app.models.catalogue import ModelInfo
from serve_app.options import EncoderWindow

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


def key(whisper: WhisperModel, window: EncoderWindow | None) -> DecodeKey:
    return DecodeKey(whisper, "transcribe", "en", None, 0.0, False, 5, window=window)


def test_the_window_fits_the_audio(whisper: WhisperModel) -> None:
    assert encoder_frames(key(whisper, None), [chunk(1.0)]) == N_FRAMES == 3000
    draft = key(whisper, EncoderWindow(margin_s=2.5, least_s=5.0))
    assert encoder_frames(draft, [chunk(1.0)]) == 500  # the least window
    assert encoder_frames(draft, [chunk(4.0)]) == 650  # its audio and 2.5 s
    assert encoder_frames(draft, [chunk(1.0), chunk(6.01)]) == 852  # the batch's longest; even
    assert encoder_frames(draft, [chunk(29.0)]) == N_FRAMES
    utterance = key(whisper, EncoderWindow(margin_s=5.0, least_s=15.0))
    assert encoder_frames(utterance, [chunk(4.0)]) == 1500
    assert encoder_frames(utterance, [chunk(12.0)]) == 1700


def heard(whisper: WhisperModel, sentences: list[np.ndarray], window: EncoderWindow | None, windows: list[int]) -> str:
    """The sentences decoded one by one in `window`; each encoder pass's frames in `windows`."""
    texts = []
    for audio in sentences:
        source = Chunk(audio, ((0, len(audio)),), 0.0)
        [segments] = decode_batch(whisper, key(whisper, window), [source])
        texts.append(" ".join(segment["text"].strip() for segment in segments))
        assert windows[-1] == encoder_frames(key(whisper, window), [source]), windows
    return " ".join(texts)


def test_live_decodes_hear_the_words_in_their_windows(
    whisper: WhisperModel, sentences: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drafts hear less well than Whisper's whole window, sentence by sentence ("roundfark
    stump" for "brown fox jumps"), but as well over these four: 0.18 WER, against 0.24 in whole
    windows; in the completed texts' wider window, 0.16."""
    windows: list[int] = []
    encode = whisper.encode
    monkeypatch.setattr(whisper, "encode", lambda features: windows.append(features.shape[-1]) or encode(features))
    said = " ".join(SAID)
    whole = word_error_rate(said, heard(whisper, sentences, None, windows))
    assert word_error_rate(said, heard(whisper, sentences, DRAFT_WINDOW, windows)) <= 0.25
    assert word_error_rate(said, heard(whisper, sentences, UTTERANCE_WINDOW, windows)) <= whole + 0.05
    assert min(windows) < 1000 and 1000 < windows[-1] < N_FRAMES, windows


def test_a_draft_stops_at_its_token_limit(
    whisper: WhisperModel, sentences: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a short window Whisper may repeat itself to its 448 tokens: a draft stops at
    FITTED_TOKENS_PER_S a second of its window (here made 2, for 10 tokens in 5 s)."""
    monkeypatch.setattr(decoding, "FITTED_TOKENS_PER_S", 2)
    audio = sentences[0]
    source = Chunk(audio, ((0, len(audio)),), 0.0)
    [segments] = decode_batch(whisper, key(whisper, DRAFT_WINDOW), [source], passes=0)
    assert 0 < sum(len(segment["tokens"]) for segment in segments) <= 10, segments
    [whole] = decode_batch(whisper, key(whisper, None), [source], passes=0)
    assert sum(len(segment["tokens"]) for segment in whole) > 10


def test_a_long_prompt_leaves_a_fitted_window_its_tokens(whisper: WhisperModel, sentences: list[np.ndarray]) -> None:
    """Whisper hears a prompt's last 223 tokens, and a fitted window's tokens are capped so that
    the prompt and they stay within its 448: a long prompt (a live session's own, and its
    completed words after it) over 14 s of speech (a window of 19 s, whose cap would be 228)."""
    audio = np.concatenate([*sentences, *sentences])[: 14 * SAMPLE_RATE]
    source = Chunk(audio, ((0, len(audio)),), 0.0)
    prompt = " ".join(SAID * 20)
    [segments] = decode_batch(whisper, replace(key(whisper, UTTERANCE_WINDOW), prompt=prompt), [source], passes=0)
    assert "quick" in " ".join(segment["text"] for segment in segments).lower(), segments
