"""Speakers per word through Ray Serve, with the official `openai` SDK as the client: the sample
call (two speakers, Diane and Sheila, sample.stm), espeak-ng dialogues, known speakers, RTTM.

Measured (tiny.en, the embedded pipeline): on the whole sample, cpWER equals plain WER (both
reported by the test that checks them); the RTTM's DER against sample.rttm 0.052, pyannote's own.
"""

from __future__ import annotations

import base64
import io
import itertools
import re
import wave
from collections import Counter

import numpy as np
import pytest
from media import SAMPLE_RTTM, SAMPLE_STM, SAMPLE_WAV, reference_words, speak, word_error_rate
from openai import BadRequestError, OpenAI

from serve_app.engine.audio import SAMPLE_RATE, decode_audio

pytestmark = pytest.mark.slow
MODEL = "tiny.en"


@pytest.fixture(scope="module")
def openai_client(service) -> OpenAI:
    return OpenAI(base_url=f"{service.url}/v1", api_key="not-checked", max_retries=0, timeout=600)


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1), file.setsampwidth(2), file.setframerate(SAMPLE_RATE)
        file.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def sample(seconds: float | None = None) -> bytes:
    with open(SAMPLE_WAV, "rb") as source:
        audio = decode_audio(source)
    return wav_bytes(audio if seconds is None else audio[: int(seconds * SAMPLE_RATE)])


def diarize(client: OpenAI, media: bytes, **fields) -> dict | str:
    """POST /v1/audio/diarize (the SDK has no method for it) with httpx, to the SDK's service."""
    import httpx

    fields = {"model": MODEL, "response_format": "verbose_json", "timestamp_granularities[]": "word"} | fields
    response = httpx.post(f"{client.base_url}audio/diarize", data=fields, files={"file": ("a.wav", media)}, timeout=600)
    assert response.status_code == 200, response.text
    return response.json() if "json" in response.headers["content-type"] else response.text


def words_of(body: dict) -> list[str]:
    return [word["word"] for word in body["words"]]


def test_the_first_twelve_seconds_with_two_speakers_have_both(openai_client: OpenAI) -> None:
    body = diarize(openai_client, sample(12), num_speakers="2")
    assert {word["speaker"] for word in body["words"]} == {"SPEAKER_00", "SPEAKER_01"}


def test_in_the_first_twelve_seconds_sheilas_line_is_hers(openai_client: OpenAI) -> None:
    body = diarize(openai_client, sample(12), num_speakers="2")

    def said_between(start: float, end: float) -> list[str]:
        return [w["speaker"] for w in body["words"] if start <= (w["start"] + w["end"]) / 2 <= end]

    # sample.stm: Diane 8.916-9.798 "I didn't know you were there.", Sheila 9.838-10.78
    # "Neither did I.", which tiny.en hears as four words, the last timed past her turn's end.
    diane, sheila = said_between(8.9, 9.8), said_between(9.8, 10.8)
    assert diane and sheila and len(set(diane)) == 1
    hers, count = Counter(sheila).most_common(1)[0]
    assert hers not in diane and count > len(sheila) / 2, body["words"]


def _per_speaker(stm_or_words) -> dict[str, str]:
    texts: dict[str, list[str]] = {}
    for speaker, text in stm_or_words:
        texts.setdefault(speaker, []).append(text)
    return {speaker: " ".join(parts) for speaker, parts in texts.items()}


def cp_wer(reference: dict[str, str], hypothesis: dict[str, str]) -> float:
    """Concatenated minimum-permutation WER: each reference speaker's words against one
    hypothesis speaker's (or nothing), the best mapping; errors over all reference words."""
    import jiwer

    def counts(ref: str, hyp: str) -> tuple[int, int]:
        if not hyp.strip():
            return len(ref.split()), len(ref.split())
        error = word_error_rate(ref, hyp)
        size = len(jiwer.RemovePunctuation()(ref).split())
        return round(error * size), size

    refs, hyps = list(reference), list(hypothesis)
    hyps += [None] * max(0, len(refs) - len(hyps))
    best = None
    for mapping in itertools.permutations(hyps, len(refs)):
        errors = 0
        total = 0
        for ref, hyp in zip(refs, mapping):
            e, n = counts(reference[ref], hypothesis.get(hyp, "") if hyp else "")
            errors, total = errors + e, total + n
        left = [h for h in hypothesis if h not in mapping]  # hypothesis speakers mapped to nobody
        errors += sum(len(hypothesis[h].split()) for h in left)
        best = errors / total if best is None else min(best, errors / total)
    return best


def test_cpwer_on_the_sample_is_within_three_points_of_wer(openai_client: OpenAI) -> None:
    body = diarize(openai_client, sample())
    reference = _per_speaker(
        (line.split(maxsplit=5)[2], line.split(maxsplit=5)[5]) for line in SAMPLE_STM.read_text().splitlines() if line.strip()
    )
    hypothesis = _per_speaker((w["speaker"], w["word"]) for w in body["words"])
    wer = word_error_rate(reference_words(), body["text"])
    cpwer = cp_wer(reference, hypothesis)
    print(f"\nsample call, {MODEL}: WER {wer:.3f}, cpWER {cpwer:.3f}")
    assert cpwer <= wer + 0.03
    first = body["words"][0]
    assert first["word"].strip(" ?.").lower() == "hello"
    diane = next(w["speaker"] for w in body["words"] if w["word"].strip(" ,.?").lower() == "diane")
    assert first["speaker"] == diane  # the opening "Hello?" is Diane's


def _dialogue(tmp_path, voices: list[str]) -> bytes:
    from test_diarization import make_dialogue

    audio, _ = make_dialogue(tmp_path, voices)
    return wav_bytes(audio)


@pytest.mark.parametrize("clip", ["sample", "dialogue", "heard-nobody"])
def test_diarizing_adds_speakers_and_keeps_every_word(openai_client: OpenAI, tmp_path, clip: str) -> None:
    if clip == "sample":
        media = sample()
    elif clip == "dialogue":
        media = _dialogue(tmp_path, ["en-us+m3", "en+f4"])
    else:  # a single word, far too short for the Diarizer to find anybody
        with open(speak("Yes.", tmp_path / "yes.wav"), "rb") as source:
            media = wav_bytes(decode_audio(source)[: SAMPLE_RATE // 3])
    for fields in ({}, {"response_format": "json", "timestamp_granularities[]": "segment"}):
        transcribed = openai_client.audio.transcriptions.create(
            model=MODEL, file=("a.wav", media), response_format="verbose_json", timestamp_granularities=["word"]
        )
        diarized = diarize(openai_client, media, **fields)
        assert diarized["text"] == transcribed.text
        if "words" in diarized:
            assert words_of(diarized) == [w.word for w in transcribed.words]
            if diarized["words"] and clip != "heard-nobody":
                assert all(w["speaker"] for w in diarized["words"])


def test_rttm_is_pyannotes_turns(openai_client: OpenAI, tmp_path) -> None:
    from pyannote.core import Segment
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate
    from test_diarization import annotation

    from serve_app.diarization.pipeline import diarization, load_pipeline

    rttm = diarize(openai_client, sample(), response_format="rttm", **{"timestamp_granularities[]": "segment"})
    assert isinstance(rttm, str)
    (tmp_path / "a.rttm").write_text(rttm)
    served = load_rttm(tmp_path / "a.rttm")["audio"]
    reference = next(iter(load_rttm(SAMPLE_RTTM).values()))
    with open(SAMPLE_WAV, "rb") as source:
        local = diarization(load_pipeline(), decode_audio(source))
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    der = metric(reference, served, uem=Segment(0, 30))
    print(f"\nRTTM DER on the sample: {der:.3f}")
    # The replica runs torch on its own thread count, which moves the embeddings' last digits:
    # measured 0.0556 served against 0.0570 in-process.
    assert der == pytest.approx(metric(reference, annotation(local.turns), uem=Segment(0, 30)), abs=0.005)


def test_the_sdks_diarized_json(openai_client: OpenAI) -> None:
    with open(SAMPLE_WAV, "rb") as audio:
        diarized = openai_client.audio.transcriptions.create(model=MODEL, file=audio, response_format="diarized_json")
    assert diarized.task == "transcribe" and diarized.usage.type == "duration"
    assert {segment.speaker for segment in diarized.segments} == {"A", "B"}
    assert all(segment.type == "transcript.text.segment" for segment in diarized.segments)
    assert diarized.segments[0].speaker == "A"


def data_url(path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def test_known_speakers_are_named_and_a_stranger_stays_anonymous(openai_client: OpenAI, tmp_path) -> None:
    media = _dialogue(tmp_path, ["en-us+m3", "en+f4", "en-us+m7"])
    enrol = "My name is on the list, and I will read this short sentence for the enrolment."
    alice = speak(enrol, tmp_path / "alice.wav", voice="en+f4", speed=160)
    bob = speak(enrol, tmp_path / "bob.wav", voice="en-us+m3", speed=160)
    diarized = openai_client.audio.transcriptions.create(
        model=MODEL,
        file=("a.wav", media),
        response_format="diarized_json",
        known_speaker_names=["Alice", "Bob"],
        known_speaker_references=[data_url(alice), data_url(bob)],
    )
    speakers = [segment.speaker for segment in diarized.segments]
    from test_diarization import LINES

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower()))

    said_by: dict[int, set[str]] = {}
    for segment in diarized.segments:
        # The line the segment's words come from: most words in common, at least three.
        shared = [len(words(segment.text) & words(line)) for line in LINES]
        best = max(range(len(LINES)), key=shared.__getitem__)
        if shared[best] >= 3:
            said_by.setdefault(best % 3, set()).add(segment.speaker)
    assert said_by[0] == {"Bob"} and said_by[1] == {"Alice"}
    assert said_by[2] <= {"A"}, speakers


def diarize_as_alice(client: OpenAI, reference: str) -> None:
    client.audio.transcriptions.create(
        model=MODEL,
        file=("a.wav", sample(3)),
        response_format="diarized_json",
        known_speaker_names=["Alice"],
        known_speaker_references=[reference],
    )


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("https://example.com/a.wav", "not a data URL"),
        ("data:audio/wav,abc", "not base64"),
        ("data:audio/wav;base64,!!!!", "not valid base64"),
        ("data:audio/wav;base64," + base64.b64encode(b"not audio at all" * 10).decode(), "cannot be used"),
        ("short", "not a data URL"),
    ],
)
def test_bad_references_are_refused(openai_client: OpenAI, reference: str, reason: str) -> None:
    with pytest.raises(BadRequestError, match=reason):
        diarize_as_alice(openai_client, reference)


def test_a_reference_of_the_wrong_length_is_refused(openai_client: OpenAI) -> None:
    for seconds in (1.0, 12.0):
        with pytest.raises(BadRequestError, match="2 to 10 s"):
            diarize_as_alice(openai_client, "data:audio/wav;base64," + base64.b64encode(sample(seconds)).decode())
