"""Segment times on the audio's clock, with the real engine (tiny.en, in-process) on real speech:
a segment starts and ends on speech, never across a silence the VAD cut out, with or without
word timestamps."""

from __future__ import annotations

import difflib
import io
import re
import wave
from dataclasses import dataclass, replace

import numpy as np
import pytest
from media import SAMPLE_STM, SAMPLE_WAV, speak
from subtitles import parse_srt

from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.engine.decoding import DecodeKey, SpeechClock, cut_head, decode_batch
from serve_app.engine.whisper import WhisperEngine
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions
from serve_app.transcript import Transcript

PAUSE_S = 7.0
SAMPLE_S = 30.0
SECOND_COPY_AT = SAMPLE_S + PAUSE_S
TOLERANCE_S = 0.5


@dataclass(frozen=True)
class Said:
    """A reference word, and the STM utterance it is in (the STM times no single word)."""

    word: str
    first: bool
    start: float
    end: float


def _normal(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


def reference(shift: float) -> list[Said]:
    said = []
    for line in SAMPLE_STM.read_text().splitlines():
        if line.strip():
            _, _, _, start, end, text = line.split(maxsplit=5)
            words = [w for w in map(_normal, text.split()) if w]
            said += [Said(w, n == 0, float(start) + shift, float(end) + shift) for n, w in enumerate(words)]
    return said


@pytest.fixture(scope="module")
def doubled() -> np.ndarray:
    """The sample call, 7 s of silence, and the sample call again."""
    sample = decode_audio(open(SAMPLE_WAV, "rb"))
    assert len(sample) == SAMPLE_S * SAMPLE_RATE
    return np.concatenate([sample, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32), sample])


@pytest.fixture(scope="module", params=[False, True], ids=["segments", "words"])
def transcript(request: pytest.FixtureRequest, engine: WhisperEngine, tiny_en: ModelInfo, doubled: np.ndarray) -> Transcript:
    return engine.transcribe(doubled, engine.load(tiny_en.path), DecodeOptions(word_timestamps=request.param))


@dataclass(frozen=True)
class Timed:
    start: float
    end: float
    text: str


def check_starts(segments: list[Timed]) -> None:
    """Each segment's first word found in the STM (the two aligned word by word): a segment that
    opens an utterance starts within 0.5 s of it; one that starts inside an utterance, within it."""
    said = reference(0.0) + reference(SECOND_COPY_AT)
    heard = [(n, w) for n, segment in enumerate(segments) for w in map(_normal, segment.text.split()) if w]
    matcher = difflib.SequenceMatcher(None, [w for _, w in heard], [s.word for s in said], autojunk=False)
    match = {a + k: b + k for a, b, size in matcher.get_matching_blocks() for k in range(size)}
    checked = 0
    for n, segment in enumerate(segments):
        mine = [i for i, (m, _) in enumerate(heard) if m == n]
        found = next((i for i in mine if i in match), None)
        if found is None:
            continue  # none of its words is in the reference (a misheard segment)
        word = said[match[found]]
        if found == mine[0] and word.first:
            assert abs(segment.start - word.start) <= TOLERANCE_S, (segment, word)
        else:
            assert word.start - TOLERANCE_S <= segment.start <= word.end + TOLERANCE_S, (segment, word)
        assert segment.start <= segment.end
        checked += 1
    assert checked >= max(8, 0.8 * len(segments))


def check_pause(segments: list[Timed]) -> None:
    """No segment overlaps the silence between the copies' speech (the 7 s pause and more)."""
    silence = (reference(0.0)[-1].end + TOLERANCE_S, reference(SECOND_COPY_AT)[0].start - TOLERANCE_S)
    assert silence[0] <= SAMPLE_S + TOLERANCE_S and silence[1] > SECOND_COPY_AT
    for segment in segments:
        assert segment.end <= silence[0] or segment.start >= silence[1], segment
    assert any(segment.start >= silence[1] for segment in segments)


def timed(transcript: Transcript) -> list[Timed]:
    return [Timed(s.start, s.end, s.text) for s in transcript.segments]


def test_every_segment_starts_where_its_words_are_said(transcript: Transcript) -> None:
    check_starts(timed(transcript))


def test_no_segment_spans_the_pause(transcript: Transcript) -> None:
    check_pause(timed(transcript))


def test_segments_are_numbered_in_order_and_keep_their_words(transcript: Transcript) -> None:
    segments = transcript.segments
    assert [s.id for s in segments] == list(range(len(segments)))
    assert all(a.start <= b.start for a, b in zip(segments, segments[1:]))
    for segment in segments:
        if segment.words is None:
            continue
        assert "".join(w.word for w in segment.words) == segment.text
        assert segment.start == segment.words[0].start and segment.end == segment.words[-1].end


def test_a_time_at_a_cut_maps_to_the_speech_beside_it() -> None:
    """A start at a cut is the start of the speech after it, an end there the end of the speech
    before it: neither lands on the silence between, whatever the float's last bit."""
    clock = SpeechClock()
    clock.extend([{"start": 0, "end": 38_431}, {"start": 100_000, "end": 116_000}, {"start": 116_000, "end": 160_000}])
    cut = 38_431 / SAMPLE_RATE
    assert clock.start(cut) == pytest.approx(100_000 / SAMPLE_RATE, abs=0.01)
    assert clock.end(cut) == pytest.approx(38_431 / SAMPLE_RATE, abs=0.01)
    # A hair under the cut, as a sum of offsets in floats can be: int() made it the sample before.
    nearly = float(np.nextafter(cut, 0.0))
    assert clock.start(nearly) == pytest.approx(100_000 / SAMPLE_RATE, abs=0.01)


# A sentence with a pause of a second in it: the VAD cuts 0.2 s of it out, and tiny.en writes
# the sentence as one segment across the cut.
FIRST, SECOND = "The quick brown fox jumps over", "the lazy dog, and then it runs away into the forest."
PAUSED_S = 1.0


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    folder = tmp_path_factory.mktemp("paused")
    first, second = (decode_audio(speak(text, folder / f"{n}.wav").open("rb")) for n, text in enumerate([FIRST, SECOND]))
    return np.concatenate([first, np.zeros(int(PAUSED_S * SAMPLE_RATE), np.float32), second])


@pytest.mark.parametrize("words", [False, True], ids=["segments", "words"])
def test_a_segment_across_a_cut_is_split_there(tiny_en: ModelInfo, paused: np.ndarray, words: bool) -> None:
    """The pieces hold the segment's text, tokens and words, in order, each on one side of the cut."""
    from faster_whisper import WhisperModel

    cut, _ = cut_head(paused)
    [chunk] = cut.chunks
    [gap] = chunk.gaps
    whisper = WhisperModel(tiny_en.path, device="cpu", compute_type="int8", cpu_threads=1)
    with_words = DecodeKey(whisper, "transcribe", "en", None, 0.0, True, 5)
    [whole] = decode_batch(whisper, with_words, [replace(chunk, gaps=())])  # as if nothing were cut out
    assert any(s["start"] < gap < s["end"] for s in whole), "tiny.en no longer writes a segment across the cut"
    [split] = decode_batch(whisper, replace(with_words, word_timestamps=words), [chunk])
    assert len(split) > len(whole)
    assert "".join(s["text"] for s in split) == "".join(s["text"] for s in whole)
    assert [t for s in split for t in s["tokens"]] == [t for s in whole for t in s["tokens"]]
    assert [w["word"] for s in split for w in s["words"]] == [w["word"] for s in whole for w in s["words"]]
    for piece in split:
        assert "".join(w["word"] for w in piece["words"]) == piece["text"]
        assert not piece["start"] < gap < piece["end"], piece


@pytest.mark.parametrize("words", [False, True], ids=["segments", "words"])
def test_the_engine_gives_the_pieces_numbered_in_order(
    engine: WhisperEngine, tiny_en: ModelInfo, paused: np.ndarray, words: bool
) -> None:
    transcript = engine.transcribe(paused, engine.load(tiny_en.path), DecodeOptions(word_timestamps=words))
    [before, after] = cut_head(paused)[0].speech
    cut_out = (before["end"] / SAMPLE_RATE, after["start"] / SAMPLE_RATE)
    segments = transcript.segments
    assert [s.id for s in segments] == list(range(len(segments))) and len(segments) >= 2
    assert segments[0].start < cut_out[0] and segments[-1].end > cut_out[1]
    for segment in segments:
        assert segment.end <= cut_out[0] or segment.start >= cut_out[1], segment
        assert (segment.words is not None) == words


@pytest.mark.slow
def test_json_and_srt_through_the_service_keep_to_the_speech(client, doubled: np.ndarray) -> None:
    """The doubled sample through Ray Serve and HTTP: the JSON's segments and the SRT's cues."""
    upload = io.BytesIO()
    with wave.open(upload, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((doubled * 32768).clip(-32768, 32767).astype("<i2").tobytes())  # the WAV's own samples
    responses = {
        fmt: client.post(
            "/v1/audio/transcriptions",
            files={"file": ("doubled.wav", upload.getvalue())},
            data={"model": "tiny.en", "response_format": fmt},
        )
        for fmt in ("json", "srt")
    }
    for response in responses.values():
        assert response.status_code == 200, response.text
    segments = [Timed(s["start"], s["end"], s["text"]) for s in responses["json"].json()["segments"]]
    assert [s["id"] for s in responses["json"].json()["segments"]] == list(range(len(segments)))
    cues = [Timed(c.start, c.end, c.text) for c in parse_srt(responses["srt"].text)]
    for found in (segments, cues):
        check_starts(found)
        check_pause(found)
    assert [(c.start, c.end, c.text) for c in cues] == [(s.start, s.end, s.text.strip()) for s in segments]
