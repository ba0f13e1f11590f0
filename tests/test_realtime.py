"""Live transcription sessions (/v1/realtime) in-process, over a fake decoder: the protocol's
events against the openai SDK's own types, turn detection on real speech, the limits, and the
edge's keys and origins on the WebSocket. The service itself: tests/test_realtime_service.py."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from media import speak
from pydantic import TypeAdapter
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from serve_app.api.app import http_app
from serve_app.api.page import page_routes
from serve_app.api.realtime import Closing, Limits, RealtimeRoutes, RealtimeSession
from serve_app.api.realtime.session import DRAFT_WINDOW, OPENING_INTERVAL_S, UTTERANCE_WINDOW
from serve_app.api.realtime.timeline import Item, Timeline
from serve_app.engine.live import AudioDecoder, agreed_words, alaw_to_pcm16, ulaw_to_pcm16
from serve_app.errors import NotFound
from serve_app.local import free_port
from serve_app.options import DecodeOptions, EncoderWindow
from serve_app.settings import AppSettings

WORDS = "the quick brown fox jumps over the lazy dog and then it runs far away into the deep dark woods".split()
SPEECH_TEXT = "Hello there. This is a test of live transcription, spoken by a machine."
SERVER_EVENT = TypeAdapter(Any)
try:
    from openai.types.realtime import RealtimeServerEvent

    SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
except ImportError:  # pragma: no cover
    pass


class FakeDecoder:
    """Two words a second of audio, from a fixed text: a decode of more audio of the same
    utterance starts with the words of a decode of less, as Whisper's mostly do."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[float] = []
        self.windows: list[EncoderWindow | None] = []
        self.urgent: list[bool] = []
        self.prompts: list[tuple[str | None, str | None, int]] = []
        """Each decode's prompt, context and its tokens (DecodeOptions)."""
        self.spans: list[tuple[float, float]] = []
        """When each decode started and ended (monotonic clock)."""
        self.cancelled = 0
        self.delay_s = delay_s

    async def resolve(self, name: str, options: DecodeOptions) -> Any:
        if name == "missing":
            raise NotFound(f"model not found: {name!r} is not among the models GET /v1/models lists")
        return name

    async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str:
        self.calls.append(len(audio) / 16000)
        self.windows.append(options.window)
        self.urgent.append(options.urgent)
        self.prompts.append((options.prompt, options.context, options.context_tokens))
        started = time.monotonic()
        if self.delay_s:
            try:
                await asyncio.sleep(self.delay_s)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        self.spans.append((started, time.monotonic()))
        return " ".join(WORDS[: round(len(audio) / 16000 * 2)]).capitalize() + "."


def make_app(decoder: Any, **settings: Any) -> Any:
    app_settings = AppSettings.model_validate({"allow_anonymous": True, "embedded_models": False} | settings)
    routes = [*RealtimeRoutes(decoder=decoder, settings=app_settings).routes(), *page_routes()]
    return http_app(app_settings, routes)


def pcm24(seconds: float, *, freq: float = 220.0, amplitude: float = 0.3) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


def wav_pcm24(path: Path) -> bytes:
    """A file's audio as 24 kHz mono PCM16, the Realtime API's audio/pcm."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def speech_pcm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    try:
        path = speak(SPEECH_TEXT, tmp_path_factory.mktemp("live") / "speech.wav", voice="en-us", speed=160)
    except RuntimeError as missing:
        pytest.skip(str(missing))
    return wav_pcm24(path)


class Session:
    """A client of a session: sends events, receives them checked against the SDK's types."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen: list[dict] = []
        self.closed = False

    def send(self, event: dict) -> None:
        self.ws.send_text(json.dumps(event))

    def append(self, pcm: bytes, chunk_s: float = 0.1, rate: int = 24000, width: int = 2) -> None:
        step = int(chunk_s * rate) * width
        for start in range(0, len(pcm), step):
            self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[start : start + step]).decode()})

    def recv(self) -> dict:
        try:
            event = self.ws.receive_json()
        except WebSocketDisconnect:
            self.closed = True
            raise
        SERVER_EVENT.validate_python(event)
        self.seen.append(event)
        return event

    def until(self, kind: str) -> dict:
        while True:
            event = self.recv()
            if event["type"] == kind:
                return event

    def types_until(self, kind: str) -> list[str]:
        kinds = []
        while True:
            event = self.recv()
            kinds.append(event["type"])
            if event["type"] == kind:
                return kinds


def leave(ws: Any) -> None:
    """Close, and wait for the session to end: the test client cancels an app still running."""
    ws.close(1000)
    while ws.receive()["type"] != "websocket.close":
        pass


@contextmanager
def session(app: Any, url: str = "/v1/realtime?intent=transcription", **kwargs: Any) -> Iterator[Session]:
    with TestClient(app) as http, http.websocket_connect(url, **kwargs) as ws:
        client = Session(ws)
        yield client
        if not client.closed:
            leave(ws)


def manual(client: Session, **transcription: Any) -> dict:
    update = {
        "type": "transcription",
        "audio": {"input": {"turn_detection": None, "transcription": transcription or {"model": "whisper-1"}}},
    }
    client.send({"type": "session.update", "session": update, "event_id": "evt_update"})
    return client.until("session.updated")


def test_session_created_then_updated_with_the_effective_configuration() -> None:
    with session(make_app(FakeDecoder())) as client:
        created = client.recv()
        assert created["type"] == "session.created"
        assert created["session"]["type"] == "transcription"
        assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        update = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "base", "language": "de", "prompt": "Hund"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.6,
                        "prefix_padding_ms": 200,
                        "silence_duration_ms": 700,
                    },
                    "noise_reduction": {"type": "near_field"},
                }
            },
        }
        client.send({"type": "session.update", "session": update})
        updated = client.until("session.updated")["session"]["audio"]["input"]
        assert updated["format"] == {"type": "audio/pcmu"}
        assert updated["transcription"] == {"model": "base", "language": "de", "prompt": "Hund"}
        assert updated["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.6,
            "prefix_padding_ms": 200,
            "silence_duration_ms": 700,
        }
        assert updated["noise_reduction"] is None  # accepted, and said not to be applied


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "session.update", "session": {"type": "realtime"}}, "session.type"),
        (
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
            },
            "session.audio.input.format.type",
        ),
        (
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            },
            "session.audio.input.format.rate",
        ),
        (
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
            },
            "session.audio.input.turn_detection.type",
        ),
        (
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}},
                },
            },
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"transcription": {"model": "missing"}}}},
            },
            "session.audio.input.transcription.model",
        ),
        (
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"transcription": {"prompt": "word " * 1000}}}},
            },
            "session.audio.input.transcription.prompt",
        ),
        ({"type": "session.update", "session": {"type": "transcription", "voice": "alloy"}}, "session.voice"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "audio"),
        ({"type": "input_audio_buffer.append"}, "audio"),
        ({"type": "response.create"}, "type"),
        ({"type": "no.such.event"}, "type"),
    ],
)
def test_a_bad_event_gets_an_error_with_its_id_and_the_session_lives_on(event: dict, param: str) -> None:
    with session(make_app(FakeDecoder())) as client:
        client.until("session.created")
        client.send({**event, "event_id": "evt_bad"})
        error = client.until("error")["error"]
        assert error["event_id"] == "evt_bad"
        assert error["param"] == param
        assert error["message"]
        manual(client)  # still served


def test_malformed_messages_get_errors_too() -> None:
    with session(make_app(FakeDecoder())) as client:
        client.until("session.created")
        client.ws.send_text("{not json")
        assert client.until("error")["error"]["code"] == "invalid_json"
        client.ws.send_bytes(b"\x00\x01")
        assert client.until("error")["error"]["code"] == "invalid_event"
        client.ws.send_text("[1, 2]")
        assert client.until("error")["error"]["code"] == "invalid_event"
        client.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
        error = client.until("error")["error"]
        assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", "evt_empty")
        manual(client)


def test_manual_commit_deltas_while_audio_arrives_then_the_completed_text() -> None:
    decoder = FakeDecoder()
    with session(make_app(decoder, realtime_partial_interval_s=0.5)) as client:
        client.until("session.created")
        manual(client)
        # Paced, so that the partial decodes run between the appends.
        for _ in range(30):
            client.append(pcm24(0.1))
            time.sleep(0.01)
        deltas = []
        client.send({"type": "input_audio_buffer.commit"})
        while True:
            event = client.recv()
            if event["type"] == "conversation.item.input_audio_transcription.delta":
                deltas.append(event)
            if event["type"] == "input_audio_buffer.committed":
                committed = event
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                completed = event
                break
        assert len(deltas) >= 2, "partial results while the audio arrived"
        assert {d["item_id"] for d in deltas} == {committed["item_id"]} == {completed["item_id"]}
        assert completed["transcript"] == "The quick brown fox jumps over.", completed
        assert (
            "".join(d["delta"] for d in deltas).lower().strip(".").split() == completed["transcript"].lower().strip(".").split()
        )
        assert completed["usage"]["type"] == "duration" and completed["usage"]["seconds"] == pytest.approx(3.0, abs=0.01)
        assert committed["previous_item_id"] is None
        # The partial decodes were drafts; the committed audio decoded in the completed texts' window.
        assert decoder.windows[-1] == UTTERANCE_WINDOW and set(decoder.windows[:-1]) == {DRAFT_WINDOW}, decoder.windows
        # The speaker waits for the completed text: it goes before the Transcriber's other work.
        assert decoder.urgent[-1] and not any(decoder.urgent[:-1]), decoder.urgent
        # A second utterance follows the first.
        client.append(pcm24(1.0))
        client.send({"type": "input_audio_buffer.commit"})
        second = client.until("input_audio_buffer.committed")
        assert second["previous_item_id"] == committed["item_id"]
        assert client.until("conversation.item.input_audio_transcription.completed")["transcript"] == "The quick."
        # Its decode was prompted with the completed text before it; no draft is prompted.
        assert decoder.prompts[-1] == (None, "The quick brown fox jumps over.", 40), decoder.prompts
        assert {prompt for prompt, window in zip(decoder.prompts, decoder.windows) if window == DRAFT_WINDOW} == {(None, None, 0)}


def test_completed_decodes_are_prompted_with_the_sessions_prompt_then_its_last_completed_words() -> None:
    decoder = FakeDecoder()
    with session(make_app(decoder, realtime_context_tokens=5)) as client:
        client.until("session.created")
        manual(client, model="whisper-1", prompt="Glossary: Ray Serve.")
        for seconds in (3.0, 2.0, 1.0):
            client.append(pcm24(seconds))
            client.send({"type": "input_audio_buffer.commit"})
            client.until("conversation.item.input_audio_transcription.completed")
    completing = [prompt for prompt, window in zip(decoder.prompts, decoder.windows) if window == UTTERANCE_WINDOW]
    # The whole words of the last 40 characters (8 a token) of "The quick brown fox jumps over. The
    # quick brown fox.", cut to their last 5 tokens by the Transcriber.
    assert completing == [
        ("Glossary: Ray Serve.", None, 5),
        ("Glossary: Ray Serve.", "The quick brown fox jumps over.", 5),
        ("Glossary: Ray Serve.", "fox jumps over. The quick brown fox.", 5),
    ], completing


def test_no_context_in_the_prompt_where_the_operator_turned_it_off() -> None:
    decoder = FakeDecoder()
    with session(make_app(decoder, realtime_context_tokens=0)) as client:
        client.until("session.created")
        manual(client)
        for seconds in (3.0, 2.0):
            client.append(pcm24(seconds))
            client.send({"type": "input_audio_buffer.commit"})
            client.until("conversation.item.input_audio_transcription.completed")
    assert {(prompt, context) for prompt, context, _ in decoder.prompts} == {(None, None)}, decoder.prompts


def tone_in_real_time(client: Session, pieces: int) -> None:
    """With no turn detection, `pieces` of 100 ms of a tone at real-time pace, then a commit."""
    client.until("session.created")
    manual(client)
    for _ in range(pieces):
        client.append(pcm24(0.1))
        time.sleep(0.1)
    client.send({"type": "input_audio_buffer.commit"})


def test_partial_decodes_come_less_often_when_the_transcriber_is_slow() -> None:
    decoder = FakeDecoder(delay_s=0.5)
    with session(make_app(decoder, realtime_partial_interval_s=0.2)) as client:
        tone_in_real_time(client, 30)
        client.until("conversation.item.input_audio_transcription.completed")
    # Each partial decode takes 0.5 s: once the first has told the session so, the next waits
    # for 1.5 x 0.5 s of new audio, not 0.2 s (nor side by side, as the first two may).
    partials = decoder.calls[1:-1]
    assert len(partials) >= 2, decoder.calls
    assert min(b - a for a, b in zip(partials, partials[1:])) >= 0.75 - 0.01, decoder.calls


def test_only_drafts_tell_the_session_what_a_partial_decode_costs() -> None:
    """The early decode's whole window costs more whatever the load: it does not make the
    next utterance's partial decodes back off."""

    class SlowWhole(FakeDecoder):
        async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str:
            self.delay_s = 0.0 if options.window == DRAFT_WINDOW else 0.4
            return await super().transcribe(audio, model, options)

    async def decode() -> list[float]:
        live = RealtimeSession(SlowWhole(), Limits(), resolved="tiny.en")
        live.timeline.append(np.zeros(16000, np.float32))
        item = Item("item_1", 0)
        costs = []
        for draft in (False, True, False):
            await live._partial(item, 16000, 0, draft=draft)
            costs.append(live.last_partial_s)
        return costs

    early, draft, early_again = asyncio.run(decode())
    assert early == 0.0 and draft < 0.4 and early_again == draft


def test_until_the_first_delta_two_partial_decodes_run_side_by_side() -> None:
    decoder = FakeDecoder(delay_s=0.6)
    with session(make_app(decoder, realtime_partial_interval_s=0.8)) as client:
        tone_in_real_time(client, 40)
        first = client.until("conversation.item.input_audio_transcription.delta")
        client.until("conversation.item.input_audio_transcription.completed")
    # The first decodes, OPENING_INTERVAL_S of audio apart, overlap: the second started before
    # the first ended. A decode's last UNSURE_TAIL_WORDS (2) are never sent, so the first delta
    # waits for the fourth, "The quick brown.", and is the word it agrees on with the third.
    assert decoder.calls[:4] == [pytest.approx(n * OPENING_INTERVAL_S, abs=0.11) for n in (1, 2, 3, 4)], decoder.calls
    (_, end_1), (start_2, _), _, (_, end_4) = decoder.spans[:4]
    assert start_2 < end_1, decoder.spans
    assert first["delta"] == "The"
    # After it, one at a time: each starts after the one before ended.
    later = [span for span in decoder.spans if span[0] >= end_4 - 0.01]
    assert len(later) >= 2, decoder.calls
    assert all(b[0] >= a[1] - 0.01 for a, b in zip(later, later[1:])), later


def test_no_delta_is_taken_back_when_decodes_disagree() -> None:
    class Wavering(FakeDecoder):
        async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str:
            n = len(self.calls)
            self.calls.append(len(audio) / 16000)
            # Agree on "alpha beta" (and on two words after it, never sent), then change the
            # second word, then settle on another text.
            texts = ["alpha beta gamma x", "alpha beta delta y", "alpha zeta delta epsilon", "alpha zeta delta epsilon"]
            return texts[min(n, 3)]

    with session(make_app(Wavering(), realtime_partial_interval_s=0.3)) as client:
        client.until("session.created")
        manual(client)
        for _ in range(14):
            client.append(pcm24(0.1))
            time.sleep(0.03)
        client.send({"type": "input_audio_buffer.commit"})
        kinds = client.types_until("conversation.item.input_audio_transcription.completed")
        deltas = [e["delta"] for e in client.seen if e["type"].endswith("transcription.delta")]
        assert "".join(deltas) == "alpha beta", (deltas, kinds)  # "beta" stays: nothing is taken back
        assert client.seen[-1]["transcript"] == "alpha zeta delta epsilon"  # the completed text refines it


def test_clear_drops_the_buffer() -> None:
    with session(make_app(FakeDecoder())) as client:
        client.until("session.created")
        manual(client)
        client.append(pcm24(0.5))
        client.send({"type": "input_audio_buffer.clear"})
        client.until("input_audio_buffer.cleared")
        client.send({"type": "input_audio_buffer.commit", "event_id": "evt_after_clear"})
        assert client.until("error")["error"]["code"] == "input_audio_buffer_commit_empty"


def test_server_vad_finds_the_utterance_in_speech(speech_pcm: bytes) -> None:
    silence = bytes(int(0.6 * 24000) * 2)
    audio = silence + speech_pcm + silence * 2
    with session(make_app(FakeDecoder())) as client:
        client.until("session.created")
        client.append(audio)
        kinds = client.types_until("conversation.item.input_audio_transcription.completed")
        started = next(e for e in client.seen if e["type"] == "input_audio_buffer.speech_started")
        stopped = next(e for e in client.seen if e["type"] == "input_audio_buffer.speech_stopped")
        speech_ms = len(speech_pcm) / 48
        assert 200 <= started["audio_start_ms"] <= 600, started  # the speech starts at 600 ms, minus 300 ms of padding
        assert 600 + speech_ms <= stopped["audio_end_ms"] <= 600 + speech_ms + 900, (stopped, speech_ms)
        assert started["item_id"] == stopped["item_id"] == client.seen[-1]["item_id"]
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")
        assert client.seen[-1]["usage"]["seconds"] > len(speech_pcm) / 48000


def paced(client: Session, pcm: bytes) -> None:
    """Append in 100 ms pieces with a pause between, so that the session decodes between them."""
    for start in range(0, len(pcm), 4800):
        client.append(pcm[start : start + 4800])
        time.sleep(0.005)


def fake_text(seconds: float) -> str:
    return " ".join(WORDS[: round(seconds * 2)]).capitalize() + "."


def test_server_vad_completes_with_the_decode_made_as_the_silence_began(speech_pcm: bytes) -> None:
    decoder = FakeDecoder()
    silence = bytes(int(0.6 * 24000) * 2)
    with session(make_app(decoder)) as client:
        client.until("session.created")
        paced(client, silence + speech_pcm + silence * 2)
        completed = client.until("conversation.item.input_audio_transcription.completed")
    # The last decode heard the speech and 200 ms of the silence after it, not the 500 ms that
    # ended the turn: the completed text is that decode's, with no decode of the committed audio.
    assert decoder.calls[-1] <= completed["usage"]["seconds"] - 0.15, (decoder.calls, completed)
    assert decoder.calls[-1] >= len(speech_pcm) / 48000
    assert completed["transcript"] == fake_text(decoder.calls[-1])
    # Partial decodes before it were drafts; that one, whose text is the completed, was not.
    assert decoder.windows[-1] == UTTERANCE_WINDOW and DRAFT_WINDOW in decoder.windows, decoder.windows


class DraftsMishear(FakeDecoder):
    """Drafts hear the last word otherwise, as a window fitted to the audio can make Whisper do."""

    async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str:
        text = await super().transcribe(audio, model, options)
        return text[:-1] + " misheard." if options.window == DRAFT_WINDOW else text


def test_no_draft_becomes_the_completed_text(speech_pcm: bytes) -> None:
    decoder = DraftsMishear()
    silence = bytes(int(0.6 * 24000) * 2)
    with session(make_app(decoder)) as client:
        server_vad(client, silence_duration_ms=500)
        paced(client, silence + speech_pcm + silence * 2)
        completed = client.until("conversation.item.input_audio_transcription.completed")
        deltas = [event["delta"] for event in client.seen if event["type"].endswith("transcription.delta")]
    assert DRAFT_WINDOW in decoder.windows and "misheard" not in completed["transcript"], (decoder.windows, completed)
    assert completed["transcript"] == fake_text(decoder.calls[-1])
    assert "".join(deltas).split() == completed["transcript"].split(), deltas


def server_vad(client: Session, **turn_detection: Any) -> dict:
    """A new session's server_vad set to `turn_detection`."""
    client.until("session.created")
    vad = {"type": "server_vad", **turn_detection}
    client.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": vad}}}})
    return client.until("session.updated")


def two_sentences_with_a_pause(client: Session, speech_pcm: bytes) -> list[str]:
    """Speech, 600 ms of silence, the speech again, then silence, with server VAD ending a turn
    after 1 s of silence; the event types until every utterance committed is completed."""
    pause, silence = bytes(int(0.6 * 24000) * 2), bytes(int(1.5 * 24000) * 2)
    server_vad(client, silence_duration_ms=1000)
    paced(client, pause + speech_pcm + pause + speech_pcm + silence)
    client.send({"type": "input_audio_buffer.clear"})  # answered once every append before it is heard
    kinds = client.types_until("input_audio_buffer.cleared")
    while kinds.count("input_audio_buffer.committed") > kinds.count("conversation.item.input_audio_transcription.completed"):
        kinds += client.types_until("conversation.item.input_audio_transcription.completed")
    return kinds


def test_a_partial_decode_under_way_gives_way_when_the_speech_stops(speech_pcm: bytes) -> None:
    decoder = FakeDecoder(delay_s=0.6)
    silence = bytes(int(0.6 * 24000) * 2)
    with session(make_app(decoder)) as client:
        client.until("session.created")
        paced(client, silence + speech_pcm + silence * 2)  # 20 times real time: all of it within one decode
        completed = client.until("conversation.item.input_audio_transcription.completed")
    # The partial decode under way when the turn ended was cancelled, not waited for.
    assert decoder.cancelled >= 1, decoder.calls
    assert completed["transcript"] == fake_text(decoder.calls[-1])


def test_speech_after_a_short_pause_is_in_the_completed_text(speech_pcm: bytes) -> None:
    decoder = FakeDecoder()
    with session(make_app(decoder, realtime_max_utterance_s=60)) as client:
        kinds = two_sentences_with_a_pause(client, speech_pcm)
        completed = next(e for e in client.seen if e["type"] == "conversation.item.input_audio_transcription.completed")
    # A decode was made 200 ms into the pause between the two, and the speech went on: the
    # completed text is of both.
    assert kinds.count("input_audio_buffer.committed") == 1, kinds
    assert completed["usage"]["seconds"] >= 2 * len(speech_pcm) / 48000 + 0.6
    assert completed["transcript"] == fake_text(decoder.calls[-1])
    assert decoder.calls[-1] >= 2 * len(speech_pcm) / 48000 + 0.6, decoder.calls
    # The item starts 300 ms before the first speech: a decode ended before the second began.
    first_speech_s = len(speech_pcm) / 48000
    assert any(first_speech_s < heard < first_speech_s + 0.3 + 0.6 for heard in decoder.calls), decoder.calls


def test_speech_resuming_right_after_a_turn_ends_gets_its_lead_in_from_the_pause(speech_pcm: bytes) -> None:
    decoder = FakeDecoder()
    pause, silence = bytes(int(0.3 * 24000) * 2), bytes(int(1.0 * 24000) * 2)
    with session(make_app(decoder)) as client:
        server_vad(client, silence_duration_ms=200)
        paced(client, silence + speech_pcm + pause + speech_pcm + silence)
        client.send({"type": "input_audio_buffer.clear"})
        client.types_until("input_audio_buffer.cleared")
        stops = [e for e in client.seen if e["type"] == "input_audio_buffer.speech_stopped"]
        starts = [e for e in client.seen if e["type"] == "input_audio_buffer.speech_started"]
    assert len(stops) >= 2 and len(starts) == len(stops), (starts, stops)
    # Each utterance after the first starts in the silence that ended the one before: past its
    # first 100 ms (the silence began 200 ms, and at most one 32 ms VAD window more, before the
    # turn ended), and at times before the turn's end.
    pairs = list(zip(stops, starts[1:]))
    assert all(start["audio_start_ms"] >= stop["audio_end_ms"] - 232 + 100 - 1 for stop, start in pairs), pairs
    assert any(start["audio_start_ms"] < stop["audio_end_ms"] for stop, start in pairs), pairs


@pytest.mark.parametrize("turn_detection", [{"type": "server_vad", "silence_duration_ms": 300}, None])
def test_an_utterance_goes_on_under_turn_settings_changed_mid_way(speech_pcm: bytes, turn_detection: dict | None) -> None:
    silence = bytes(int(0.6 * 24000) * 2)
    half = len(speech_pcm) // 4 * 2
    with session(make_app(FakeDecoder())) as client:
        server_vad(client, silence_duration_ms=500)
        client.append(silence + speech_pcm[:half])
        started = client.until("input_audio_buffer.speech_started")
        client.send(
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"turn_detection": turn_detection}}},
            }
        )
        client.until("session.updated")
        client.append(speech_pcm[half:] + silence * 2)
        if turn_detection is None:  # the client commits now
            client.send({"type": "input_audio_buffer.commit"})
        completed = client.until("conversation.item.input_audio_transcription.completed")
        starts = [e for e in client.seen if e["type"] == "input_audio_buffer.speech_started"]
    # One utterance, from before the change to the silence after it: none left without its text.
    assert [e["item_id"] for e in starts] == [started["item_id"]] == [completed["item_id"]], client.seen
    assert completed["usage"]["seconds"] >= len(speech_pcm) / 48000, completed


def test_a_long_utterance_ends_at_its_next_short_pause(speech_pcm: bytes) -> None:
    # The first sentence is over half of realtime_max_utterance_s: the 600 ms pause after it
    # ends its turn, though the turn's silence is 1 s.
    with session(make_app(FakeDecoder(), realtime_max_utterance_s=8)) as client:
        kinds = two_sentences_with_a_pause(client, speech_pcm)
        completed = [e for e in client.seen if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert kinds.count("input_audio_buffer.committed") >= 2, kinds
    first_speech_s = len(speech_pcm) / 48000
    assert 4 <= completed[0]["usage"]["seconds"] < first_speech_s + 0.3 + 0.6, completed[0]


def test_g711_formats(speech_pcm: bytes) -> None:
    table = np.arange(256, dtype=np.uint8).tobytes()
    audioop = pytest.importorskip("audioop")  # gone in Python 3.13: the tables stand alone there
    assert np.array_equal(ulaw_to_pcm16(table), np.frombuffer(audioop.ulaw2lin(table, 2), "<i2"))
    assert np.array_equal(alaw_to_pcm16(table), np.frombuffer(audioop.alaw2lin(table, 2), "<i2"))


def test_the_decoder_resamples_any_piece_sizes_to_16k() -> None:
    decoder = AudioDecoder("audio/pcm")
    pcm = pcm24(1.0)
    pieces = [pcm[i : i + 333] for i in range(0, len(pcm), 333)]  # odd sizes: half samples too
    out = np.concatenate([decoder.decode(piece) for piece in pieces])
    assert abs(len(out) - 16000) <= 32
    assert 0.2 < np.abs(out).max() < 0.35
    assert len(AudioDecoder("audio/pcmu").decode(bytes(800))) in range(1568, 1601)


def test_agreement_and_timeline() -> None:
    assert agreed_words("Hello, world how".split(), "hello world, who are".split()) == 2
    timeline = Timeline()
    for _ in range(10):
        timeline.append(np.ones(100, np.float32))
    timeline.drop_before(250)
    assert (timeline.start, timeline.end, timeline.samples) == (250, 1000, 750)
    assert len(timeline.view(200, 300)) == 50


def test_the_buffer_limit_sends_an_error_then_closes_cleanly() -> None:
    with session(make_app(FakeDecoder(), realtime_max_buffer_s=2)) as client:
        client.until("session.created")
        manual(client)
        client.append(pcm24(3.0), chunk_s=0.5)
        error = client.until("error")["error"]
        assert error["code"] == "input_audio_buffer_overflow"
        with pytest.raises(WebSocketDisconnect) as closed:
            client.recv()
        assert closed.value.code == 1000


def test_idle_and_session_limits_send_an_error_then_close() -> None:
    with session(make_app(FakeDecoder(), realtime_idle_timeout_s=0.5)) as client:
        client.until("session.created")
        assert client.until("error")["error"]["code"] == "session_idle_timeout"
        with pytest.raises(WebSocketDisconnect) as closed:
            client.recv()
        assert closed.value.code == 1000
    with session(make_app(FakeDecoder(), realtime_max_session_s=1)) as client:
        client.until("session.created")
        for _ in range(20):
            client.append(pcm24(0.1))
            time.sleep(0.1)
        assert client.until("error")["error"]["code"] == "session_expired"
        with pytest.raises(WebSocketDisconnect):
            client.recv()


def test_a_client_that_does_not_read_is_dropped() -> None:
    async def scenario() -> Closing:
        sent = asyncio.Event()

        async def send(text: str) -> None:
            sent.set()
            await asyncio.Event().wait()  # the client never reads: the socket's buffers stay full

        messages: asyncio.Queue[str | None] = asyncio.Queue()
        for _ in range(40):
            await messages.put(json.dumps({"type": "input_audio_buffer.commit"}))  # each answered with an error

        async def receive() -> str | None:
            return await messages.get()

        live = RealtimeSession(FakeDecoder(), Limits(send_queue=8), resolved="whisper-1")
        return await asyncio.wait_for(live.run(receive, send), 10)

    closing = asyncio.run(scenario())
    assert closing.code == 1008 and "did not read" in closing.reason


def test_the_session_limit_and_the_intent() -> None:
    app = make_app(FakeDecoder(), realtime_max_sessions=1)
    with TestClient(app) as http:
        with http.websocket_connect("/v1/realtime?intent=transcription") as first:
            first.receive_json()
            leave_later = first
            with http.websocket_connect("/v1/realtime?intent=transcription") as second:
                assert second.receive_json()["error"]["code"] == "too_many_sessions"
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_json()
                assert closed.value.code == 1013
            leave(leave_later)
        with http.websocket_connect("/v1/realtime?model=gpt-realtime") as wrong:
            assert wrong.receive_json()["error"]["code"] == "invalid_intent"
        with http.websocket_connect("/v1/realtime?intent=transcription&model=missing") as missing:
            assert missing.receive_json()["error"]["code"] == "model_not_found"


def keyed_app(tmp_path: Path, **settings: Any) -> Any:
    keys = tmp_path / "keys"
    keys.write_text("live-key\n")
    return make_app(FakeDecoder(), allow_anonymous=False, api_keys_file=str(keys), **settings)


def test_keys_on_the_websocket_header_or_subprotocol(tmp_path: Path) -> None:
    from starlette.testclient import WebSocketDenialResponse

    app = keyed_app(tmp_path)
    url = "/v1/realtime?intent=transcription"
    with TestClient(app) as http:
        for refused in (
            {},
            {"headers": {"Authorization": "Bearer wrong"}},
            {"subprotocols": ["realtime", "openai-insecure-api-key.wrong"]},
        ):
            with pytest.raises(WebSocketDenialResponse) as denied, http.websocket_connect(url, **refused):
                pass
            assert denied.value.status_code == 401
        with http.websocket_connect(url, headers={"Authorization": "Bearer live-key"}) as ws:
            assert ws.receive_json()["type"] == "session.created"
            leave(ws)
        with http.websocket_connect(url, subprotocols=["realtime", "openai-insecure-api-key.live-key"]) as ws:
            assert ws.accepted_subprotocol == "realtime"  # never the key
            assert ws.receive_json()["type"] == "session.created"
            leave(ws)
        # The page is open; the API behind it is not.
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert http.get("/ui/app.js").status_code == 200
        assert http.post("/").status_code in (401, 405)
        assert http.get("/ui/other.js").status_code == 401


def test_a_foreign_page_cannot_open_a_session(tmp_path: Path) -> None:
    from starlette.testclient import WebSocketDenialResponse

    app = make_app(FakeDecoder(), cors_origins=["https://app.example"])
    url = "/v1/realtime?intent=transcription"
    with TestClient(app) as http:
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            http.websocket_connect(url, headers={"Origin": "https://evil.example"}),
        ):
            pass
        assert denied.value.status_code == 403
        for origin in ("https://app.example", "http://testserver"):  # allowed, and the service's own
            with http.websocket_connect(url, headers={"Origin": origin}) as ws:
                assert ws.receive_json()["type"] == "session.created"
                leave(ws)


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The app on a real socket (uvicorn, in a thread), for clients that speak WebSocket."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_openai_sdk_realtime_client_unchanged(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    pytest.importorskip("websockets")
    with served(keyed_app(tmp_path, realtime_partial_interval_s=0.4)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="live-key")
        with client.realtime.connect(extra_query={"intent": "transcription"}, model="whisper-1") as connection:
            assert connection.recv().type == "session.created"
            connection.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
            assert connection.recv().type == "session.updated"
            for _ in range(20):
                connection.input_audio_buffer.append(audio=base64.b64encode(pcm24(0.1)).decode())
                time.sleep(0.02)
            connection.input_audio_buffer.commit()
            events = []
            for event in connection:
                events.append(event)
                if event.type == "conversation.item.input_audio_transcription.completed":
                    break
            assert event.transcript == "The quick brown fox."
            assert any(e.type == "conversation.item.input_audio_transcription.delta" for e in events)
            connection.send({"type": "response.create", "event_id": "evt_nope"})  # type: ignore[arg-type]
            error = connection.recv()
            assert error.type == "error" and error.error.event_id == "evt_nope"
