"""A live transcription client over the openai SDK's own realtime client: a file's audio sent
at real-time pace in 100 ms chunks of 24 kHz PCM16, every server event kept with the time it
arrived. Shared by tests/test_realtime_service.py and benchmarks/realtime.py."""

from __future__ import annotations

import base64
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from serve_app.engine.live import agreed_words

RATE = 24000


def pcm24(path: Path) -> bytes:
    """A file's audio as the Realtime API's audio/pcm: 24 kHz mono PCM16, little-endian."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        frames += resampler.resample(None)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype("<i2").tobytes()


def behind_silence(pcm: bytes, ms: int) -> bytes:
    """`pcm` (audio/pcm, 24 kHz) with `ms` milliseconds of silence ahead of it."""
    return bytes(2 * RATE * ms // 1000) + pcm


def speech_regions(pcm: bytes) -> list[tuple[float, float]]:
    """Where `pcm` (audio/pcm, 24 kHz) holds speech, in seconds: Silero VAD over the whole audio
    at once, regions apart at pauses of 100 ms or more, with no padding. Where the speaker
    stopped, found apart from the session's own turn detection: a turn's speech_stopped says
    where its silence ended, and how long that silence was depends on the turn (a long
    utterance ends at a shorter pause: serve_app/api/realtime/session.py's LONG_PAUSE_S)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from serve_app.engine.live import AudioDecoder

    audio = AudioDecoder("audio/pcm").decode(pcm)
    options = VadOptions(min_silence_duration_ms=100, speech_pad_ms=0)
    return [(region["start"] / 16000, region["end"] / 16000) for region in get_speech_timestamps(audio, options)]


@dataclass
class LiveRun:
    """What one session saw: (seconds since the first chunk was sent, event) pairs, and where
    its audio held speech (`speech_regions`)."""

    events: list[tuple[float, Any]] = field(default_factory=list)
    audio_s: float = 0.0
    speech: list[tuple[float, float]] = field(default_factory=list)
    sent_s: float = 0.0
    """When the last chunk of the file was sent."""

    def of(self, kind: str) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.events if e.type == kind]

    @property
    def completed(self) -> list[str]:
        return [e.transcript for _, e in self.of("conversation.item.input_audio_transcription.completed")]

    @property
    def text(self) -> str:
        return " ".join(text.strip() for text in self.completed if text.strip())

    @property
    def first_delta_s(self) -> float | None:
        deltas = self.of("conversation.item.input_audio_transcription.delta")
        return deltas[0][0] if deltas else None

    def first_delta_latencies(self) -> list[float]:
        """For each utterance: its first delta's arrival after its speech began, at real-time pace."""
        starts = {e.item_id: self.speech_start(e.audio_start_ms / 1000) for _, e in self.of("input_audio_buffer.speech_started")}
        first: dict[str, float] = {}
        for t, e in self.of("conversation.item.input_audio_transcription.delta"):
            first.setdefault(e.item_id, t)
        return [first[item] - start for item, start in starts.items() if item in first]

    def completed_at(self) -> list[tuple[float, float]]:
        """For each utterance server VAD ended: where its speech ended on the audio's clock, and
        its completed text's arrival after that."""
        ends = {e.item_id: self.speech_end(e.audio_end_ms / 1000) for _, e in self.of("input_audio_buffer.speech_stopped")}
        done = {e.item_id: t for t, e in self.of("conversation.item.input_audio_transcription.completed")}
        return [(end, done[item] - end) for item, end in ends.items() if item in done]

    def speech_start(self, started: float) -> float:
        """Where the speech of a turn whose speech_started says `started` (seconds: the speech
        less its prefix padding, or where the turn before ended) began: the start of the first
        speech region that ends after that, or `started` itself inside a region."""
        starts = [start for start, end in self.speech if end > started]
        return max(started, starts[0]) if starts else started

    def speech_end(self, stopped: float) -> float:
        """Where the speech of a turn whose speech_stopped came at `stopped` (seconds) ended: the
        end of the last speech region begun before that, or `stopped` itself where a region
        goes on past it (a turn cut without a pause)."""
        ends = [end for start, end in self.speech if start < stopped]
        return min(stopped, ends[-1]) if ends else stopped

    def completed_latencies(self) -> list[float]:
        return [latency for _, latency in self.completed_at()]

    def delta_words(self) -> tuple[int, int]:
        """How many of the words sent as deltas the utterance's completed text has in the same
        place (case and punctuation aside), and how many were sent: how often a delta was right
        to go out."""
        sent: dict[str, list[str]] = {}
        for _, e in self.of("conversation.item.input_audio_transcription.delta"):
            sent.setdefault(e.item_id, []).extend(e.delta.split())
        done = {e.item_id: e.transcript.split() for _, e in self.of("conversation.item.input_audio_transcription.completed")}
        pairs = [(words, done[item]) for item, words in sent.items() if item in done]
        return sum(agreed_words(words, final) for words, final in pairs), sum(len(words) for words, _ in pairs)

    def deltas_kept(self) -> float | None:
        kept, total = self.delta_words()
        return kept / total if total else None

    def summary(self) -> dict[str, float | int | None]:
        firsts, completes = self.first_delta_latencies(), self.completed_latencies()
        return {
            "utterances": len(self.completed),
            "first_delta_s": self.first_delta_s,
            "first_delta_latency_median_s": statistics.median(firsts) if firsts else None,
            "completed_latency_median_s": statistics.median(completes) if completes else None,
            "completed_latency_max_s": max(completes) if completes else None,
            "deltas_kept": self.deltas_kept(),
            "last_completed_after_audio_s": (self.events[-1][0] - self.audio_s) if self.events else None,
        }


def stream(
    base_url: str,
    pcm: bytes,
    *,
    api_key: str = "unused",
    model: str = "whisper-1",
    chunk_s: float = 0.1,
    pace: float = 1.0,
    tail_silence_s: float = 1.0,
    session: dict | None = None,
    timeout_s: float = 120,
) -> LiveRun:
    """Send `pcm` to a new session at `pace` times real time, then `tail_silence_s` of silence
    and a commit (what a client that stops talking does), and collect the events until every
    committed utterance has its completed (or failed) event: a session that lags behind the
    audio is waited for (up to `timeout_s`), not cut short."""
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
    run = LiveRun(audio_s=len(pcm) / 2 / RATE, speech=speech_regions(pcm))
    step = int(chunk_s * RATE) * 2
    with client.realtime.connect(extra_query={"intent": "transcription"}, model=model) as connection:
        assert connection.recv().type == "session.created"
        if session is not None:
            connection.session.update(session=session)  # type: ignore[arg-type]
        started = time.monotonic()

        def receive() -> None:
            try:
                for event in connection:
                    run.events.append((time.monotonic() - started, event))
                    if _settled(run):
                        return
            except Exception:  # the socket closed under us: the test says what is missing
                return

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        audio = pcm + bytes(int(tail_silence_s * RATE) * 2)
        for index, offset in enumerate(range(0, len(audio), step)):
            wait = started + index * chunk_s / pace - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[offset : offset + step]).decode())
            if offset + step >= len(pcm) and not run.sent_s:
                run.sent_s = time.monotonic() - started
        connection.input_audio_buffer.commit()  # an error if VAD committed all already: fine
        # Answered once every event before it is handled: then all the utterances are committed.
        connection.input_audio_buffer.clear()
        reader.join(timeout_s)
    return run


def _settled(run: LiveRun) -> bool:
    committed = {e.item_id for _, e in run.of("input_audio_buffer.committed")}
    ended = {
        e.item_id
        for _, e in run.events
        if e.type
        in ("conversation.item.input_audio_transcription.completed", "conversation.item.input_audio_transcription.failed")
    }
    # Settled: the clear after the last audio and the commit was answered (so every utterance
    # is committed), and every committed utterance has its text.
    return bool(run.of("input_audio_buffer.cleared")) and committed <= ended
