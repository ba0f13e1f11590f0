"""A decode's own context (DecodeOptions.context: a live session's last completed words) is
heard in Whisper's prompt, and requests with different contexts of as many tokens still share
a batch, each decoded as it would be alone; with the real engine (tiny.en, in-process) on
espeak-ng speech."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel
from media import speak

from serve_app.api.realtime.session import UTTERANCE_WINDOW
from serve_app.engine.audio import decode_audio
from serve_app.engine.decoding import Chunk, DecodeKey, context_tokens, decode_batch
from serve_app.engine.whisper import WhisperEngine
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions

SAID = "His daughter feeds the hens and carries the milk to the kitchen."
SHOUTED = "EVERY MORNING ON THE FARM HIS DAUGHTER FEEDS THE HENS"
"""Whisper writes on in the case of its prompt: after this, in capitals."""
MUMBLED = "so yeah um like we were saying uh you know the farm and all that stuff"
"""After this, in small letters and with no full stop."""


@pytest.fixture(scope="module")
def whisper(tiny_en: ModelInfo) -> WhisperModel:
    return WhisperModel(tiny_en.path, device="cpu", compute_type="int8", cpu_threads=1)


@pytest.fixture(scope="module")
def sentence(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    with Path(speak(SAID, tmp_path_factory.mktemp("context") / "said.wav")).open("rb") as media:
        return decode_audio(media)


def texts(whisper: WhisperModel, key: DecodeKey, chunks: list[Chunk]) -> list[str]:
    return [" ".join(segment["text"].strip() for segment in segments) for segments in decode_batch(whisper, key, chunks)]


def test_the_context_is_its_last_tokens(whisper: WhisperModel) -> None:
    tokens = context_tokens(whisper, "  The quick brown fox jumps over the lazy dog. ", 4)
    assert len(tokens) == 4
    assert whisper.hf_tokenizer.decode(list(tokens)) == " the lazy dog."
    assert len(context_tokens(whisper, "Hello.", 40)) == 2  # all it has: fewer than asked
    assert context_tokens(whisper, None, 40) == context_tokens(whisper, " ", 40) == context_tokens(whisper, "Hello.", 0) == ()


def test_chunks_with_their_own_contexts_decode_in_one_batch_each_as_alone(whisper: WhisperModel, sentence: np.ndarray) -> None:
    shouted, mumbled = context_tokens(whisper, SHOUTED, 12), context_tokens(whisper, MUMBLED, 12)
    assert len(shouted) == len(mumbled) == 12
    key = DecodeKey(whisper, "transcribe", "en", None, 0.0, False, 5, window=UTTERANCE_WINDOW, context_tokens=12)
    chunk = Chunk(sentence, ((0, len(sentence)),), 0.0)
    together = texts(whisper, key, [replace(chunk, context=shouted), replace(chunk, context=mumbled)])
    alone = [texts(whisper, key, [replace(chunk, context=context)])[0] for context in (shouted, mumbled)]
    assert together == alone
    # Each row heard its own prompt, not its neighbour's.
    assert together[0].startswith("HIS DAUGHTER FEEDS"), together
    assert together[1].startswith("his daughter feeds") and not together[1].endswith("."), together
    unprompted = DecodeKey(whisper, "transcribe", "en", None, 0.0, False, 5, window=UTTERANCE_WINDOW)
    assert texts(whisper, unprompted, [chunk])[0].startswith("His daughter feeds"), "the context made no difference"


def test_requests_share_batches_by_their_contexts_length(tiny_en: ModelInfo, sentence: np.ndarray) -> None:
    """Contexts of as many tokens share a batch; a shorter one decodes in a batch of its own
    (CTranslate2 takes no prompts of different lengths in one)."""
    engine = WhisperEngine(workers=1, cpu_threads=1)
    try:
        model = engine.load(tiny_en.path)
        contexts = [SHOUTED, MUMBLED, MUMBLED.upper(), "The farm."]
        options = [DecodeOptions(window=UTTERANCE_WINDOW, context=context, context_tokens=12) for context in contexts]
        keys = [engine.prepare(sentence, model, option).key for option in options]
        assert [key.context_tokens for key in keys] == [12, 12, 12, 3]
        assert keys[0] == keys[1] == keys[2] != keys[3]
        with ThreadPoolExecutor(len(options)) as pool:
            heard = list(pool.map(lambda option: engine.transcribe(sentence, model, option).text.strip(), options))
        assert engine.batcher.batches < engine.batcher.chunks == len(options), "no two contexts were decoded together"
    finally:
        engine.close()
    assert heard[0].startswith("HIS DAUGHTER FEEDS") and heard[1].startswith("his daughter feeds"), heard
    assert "daughter" in heard[3].lower(), heard
