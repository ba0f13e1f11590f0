"""One live transcription session: audio in, utterances found (server VAD) or committed by
the client, each decoded again as it grows (drafts, whose agreed words go out as deltas), and
its whole text completed. The tuning below was measured on this project's benchmarks
(benchmarks/live_engine.py, benchmarks/live_wer.py, benchmarks/realtime.py)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from serve_app.api.realtime.config import SessionConfig, session_object, updated
from serve_app.api.realtime.protocol import CLIENT_EVENTS_NOT_SERVED, NORMAL_CLOSE, POLICY_CLOSE, ClientError, Closing, new_id
from serve_app.api.realtime.timeline import Item, Timeline
from serve_app.api.realtime.turns import Cut, Quiet, Started, Stopped, Turns
from serve_app.engine.live import SAMPLE_RATE, AudioDecoder, agreed_words, extends
from serve_app.errors import ServiceError, as_service_error
from serve_app.options import DecodeOptions, EncoderWindow
from serve_app.settings import AppSettings

__all__ = ["Decoder", "Limits", "RealtimeSession", "carried"]

logger = logging.getLogger("ray.serve")

DRAFT_WINDOW = EncoderWindow(margin_s=2.5, least_s=5.0)
"""The partial decodes' encoder window: quick and heard less well, for deltas that the
completed text may refine. On one core of a Xeon (tiny.en int8), a second of speech decoded in
0.53 to 0.62 s in the whole 30 s window and in 0.08 to 0.09 s in this one; 4 s of speech, in
0.80 and 0.22 s. In windows only 1 s longer than their audio, the drafts agreed less, and the
first deltas came no sooner (benchmarks/live_engine.py's corpus, in-process)."""
UTTERANCE_WINDOW = EncoderWindow(margin_s=5.0, least_s=15.0)
"""The encoder window of the decodes whose text is completed: the early decode's and the
committed utterance's. On benchmarks/live_engine.py's corpus, in-process on a 2-core Xeon (19
utterances of 1 to 12 s), against Whisper's whole window: completed texts 0.85 s after the
speech ended rather than 1.26 s (medians), and their WER against the file route 0.058 rather
than 0.056 (against the words said, 0.118 and 0.116, over 510 words); audio and 10 s more, at
least 20 s: 1.02 s and 0.063."""
OPENING_PARTIALS = 2
"""Until an utterance's first delta, up to this many of its partial decodes run at once, one
started every OPENING_INTERVAL_S of new speech, while the Transcriber answers within the
partial interval. A delta needs two decodes that agree, and each costs an encoder pass (for
tiny.en, 0.1 to 0.2 s of one core for a draft of a few seconds of speech; 0.35 to 0.6 s in
Whisper's whole window): one after the other, the first words would wait for twice that; side
by side, on the Transcriber's workers, for about once. A busy Transcriber, slower than that,
gets them one at a time (PARTIAL_BACKOFF)."""
OPENING_INTERVAL_S = 0.3
"""Measured on 18 espeak-ng utterances (benchmarks/realtime.py's clip and corpus.py's five
passages), in-process as benchmarks/live_engine.py runs them, two runs each: a decode every
0.4 s, the first delta came 1.50 to 1.51 s after the speech began (median); every 0.3 s,
1.13 s (a third run: 1.28 s), and the completed texts no later. No one decode hears more, but
two that agree come sooner once the speech is long enough to be heard right (about 0.6 to 1 s
of it)."""
UNSURE_TAIL_WORDS = 2
"""A partial decode's last words that are never sent as a delta, even when the decode before
agrees on them: the completed text sends them. At the audio's edge the last word may not be
over ("jump" for "jumped"), and a decode that stops there ends it as a sentence ("The." for
"The quick"); the word before it is heard with little after it, and drafts of a few seconds
agree on it wrongly more often than on those before. Holding back one word, the completed
texts kept 168 of the 260 delta words in place on benchmarks/live_engine.py's corpus, and the
first delta came 0.99 s after the speech began (median); holding back two, 227 of 301 and 1.23 s
(one run each, in-process, on a 2-core Xeon)."""
PARTIAL_BACKOFF = 1.5
"""The utterance in progress is decoded again once the new audio is as long as the partial
interval, or this many times the last partial decode took, whichever is more: when the
Transcriber is busy, each session asks it for fewer partial decodes, and the completed texts
keep up."""
CARRIED_CHARS_PER_TOKEN = 8
"""A session keeps this many characters of its last completed words for each token of context
(Limits.context_tokens): more than the tokens take (English runs 4 to 5 characters a token in
Whisper's vocabulary), so that the Transcriber cuts the context to its count of tokens."""
MIN_COMMIT_S = 0.1
"""The least audio a commit takes, as OpenAI's service asks (100 ms)."""


class Decoder(Protocol):
    """What a session needs of the service: a model's name checked, and audio decoded."""

    async def resolve(self, name: str, options: DecodeOptions) -> Any:
        """The model `name` finds (an opaque handle for `transcribe`), or a ServiceError
        saying why it cannot transcribe with `options`."""

    async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_session_s: float = 1800
    idle_timeout_s: float = 60
    max_buffer_s: float = 120
    max_utterance_s: float = 20
    partial_interval_s: float = 0.8
    context_tokens: int = 40
    """`realtime_context_tokens`. On benchmarks/live_wer.py's corpus (19 utterances, 510 words
    said, a 2-core Xeon), the completed texts' WER against the words said was 0.110 with 40
    tokens, 0.104 to 0.110 with 24 to 80, and 0.118 with none (the file route's: 0.110);
    against the file route's text, 0.062, 0.052 to 0.062, and 0.058: within the few words
    that tiny.en hears one way in one cut of the audio and another way in another."""
    send_queue: int = 256

    @classmethod
    def from_settings(cls, settings: AppSettings) -> Limits:
        return cls(
            max_session_s=settings.realtime_max_session_s,
            idle_timeout_s=settings.realtime_idle_timeout_s,
            max_buffer_s=settings.realtime_max_buffer_s,
            max_utterance_s=settings.realtime_max_utterance_s,
            partial_interval_s=settings.realtime_partial_interval_s,
            context_tokens=settings.realtime_context_tokens,
            send_queue=settings.realtime_send_queue,
        )


def carried(context: str, text: str, chars: int) -> str:
    """A session's context once `text` is completed: the last words of both that fit in `chars`
    characters."""
    joined = " ".join([*context.split(), *text.split()])
    return joined if len(joined) <= chars else joined[len(joined) - chars :].partition(" ")[2]


def _ms(samples: int) -> int:
    return round(samples * 1000 / SAMPLE_RATE)


class RealtimeSession:
    """One transcription session's protocol, over `send` (a JSON text frame out) and the
    client's messages given to `handle`; `run` drives it until it ends, and answers why."""

    def __init__(self, decoder: Decoder, limits: Limits, *, model: str = "whisper-1", resolved: Any = None) -> None:
        self.decoder = decoder
        self.limits = limits
        self.id = new_id("sess")
        self.created = time.time()
        self.config = SessionConfig(model=model)
        self.model = resolved
        self.audio_in = AudioDecoder(self.config.format)
        self.timeline = Timeline()
        self.turns = self._turns()
        """Server VAD's turns, or None where the client commits."""
        self.item: Item | None = None
        """The utterance in progress (server VAD: speech heard; no turn detection: audio appended)."""
        self.committed: deque[Item] = deque()
        self.previous_item_id: str | None = None
        self.context = ""
        """The session's last completed words (CARRIED_CHARS_PER_TOKEN)."""
        self.outbox: asyncio.Queue[dict] = asyncio.Queue(maxsize=limits.send_queue)
        self.wake = asyncio.Event()
        self.last_partial_s = 0.0
        """How long the latest draft took (PARTIAL_BACKOFF): what the next would cost. The early
        decode's wider window (UTTERANCE_WINDOW) costs more whatever the load."""
        self.partials: set[asyncio.Task[None]] = set()
        """The partial decodes of the utterance in progress under way (not the early one)."""
        self.last_client_event = time.monotonic()
        self.closing: Closing | None = None
        self.ended = asyncio.Event()

    # -- events out --------------------------------------------------------------------------

    def emit(self, event: dict) -> None:
        event = {"event_id": new_id("event"), **event}
        try:
            self.outbox.put_nowait(event)
        except asyncio.QueueFull:
            self.end(
                Closing(
                    POLICY_CLOSE,
                    f"the client did not read the server's events: {self.limits.send_queue} were waiting (realtime_send_queue)",
                )
            )

    def error(
        self,
        message: str,
        *,
        code: str,
        param: str | None = None,
        event_id: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        self.emit(
            {"type": "error", "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}}
        )

    def fatal(self, message: str, *, code: str, close: int = NORMAL_CLOSE) -> None:
        """An `error` event, then the session closes: for the limits of the session."""
        if self.closing is None:
            self.error(message, code=code, kind="invalid_request_error")
            self.end(Closing(close, message[:120]))

    def end(self, closing: Closing) -> None:
        if self.closing is None:
            self.closing = closing
            self.ended.set()

    def session_object(self) -> dict:
        return session_object(self.config, self.id, expires_at=int(self.created + self.limits.max_session_s))

    # -- events in ---------------------------------------------------------------------------

    async def handle(self, message: str | bytes) -> None:
        """One client message: applied, or answered with `error` (the session lives on)."""
        self.last_client_event = time.monotonic()
        event_id = None
        try:
            if isinstance(message, bytes):
                raise ClientError("send client events as JSON text frames, not binary ones", code="invalid_event")
            try:
                event = json.loads(message)
            except (json.JSONDecodeError, RecursionError):
                raise ClientError("the message is not valid JSON; send a client event object", code="invalid_json") from None
            if not isinstance(event, dict):
                raise ClientError("a client event is a JSON object with a type", code="invalid_event")
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event.get("type")
            if kind == "input_audio_buffer.append":
                self.append(event)
            elif kind == "input_audio_buffer.commit":
                self.commit_buffer()
            elif kind == "input_audio_buffer.clear":
                self.clear_buffer()
            elif kind == "session.update":
                await self.update(event)
            elif kind in CLIENT_EVENTS_NOT_SERVED:
                raise ClientError(
                    f"{kind} is not served here: this service holds transcription sessions only (intent=transcription)",
                    code="unsupported_event",
                    param="type",
                )
            else:
                raise ClientError(f"unknown client event type {kind!r}", code="invalid_event", param="type")
        except ClientError as problem:
            self.error(problem.message, code=problem.code, param=problem.param, event_id=event_id)

    async def update(self, event: dict) -> None:
        config = updated(self.config, event)
        model = self.model
        if (config.model, config.language) != (self.config.model, self.config.language) or model is None:
            try:
                model = await self.decoder.resolve(config.model, config.options)
            except ServiceError as refused:
                raise ClientError(
                    refused.reason,
                    code="model_not_found" if refused.status == 404 else "invalid_value",
                    param="session.audio.input.transcription.model",
                ) from None
        self._apply(config)
        self.model = model
        self.emit({"type": "session.updated", "session": self.session_object()})

    def _apply(self, config: SessionConfig) -> None:
        before, self.config = self.config, config
        if config.format != before.format:
            self.audio_in = AudioDecoder(config.format)
        if config.turn_detection != before.turn_detection:
            if before.turn_detection is None and self.item is not None:
                # Turn detection comes on: it looks for speech in the audio that follows.
                self.item.dropped = True
                self.item = None
            self.turns = self._turns()
            if self.turns is not None and self.item is not None:
                self.turns.resume(self.item.start)  # the utterance goes on, its end found by the new settings

    def _turns(self) -> Turns | None:
        turn = self.config.turn_detection
        if turn is None:
            return None
        return Turns(turn, origin=self.timeline.end, longest=int(self.limits.max_utterance_s * SAMPLE_RATE))

    def append(self, event: dict) -> None:
        data = event.get("audio")
        if not isinstance(data, str):
            raise ClientError("audio must be base64-encoded audio in the session's format", param="audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("audio is not valid base64", param="audio") from None
        samples = self.audio_in.decode(raw)
        self.timeline.append(samples)
        if self.turns is None:
            if self.item is None and len(samples):
                self.item = Item(new_id("item"), self.timeline.start, heard=self.timeline.start)
        else:
            self._detect(self.turns, samples)
        held = self.timeline.samples + sum(len(item.audio) for item in self.committed if item.audio is not None)
        if held > self.limits.max_buffer_s * SAMPLE_RATE:
            self.fatal(
                f"the session holds over {self.limits.max_buffer_s:g} s of audio (realtime_max_buffer_s): commit the buffer "
                "more often, or let server_vad do so; the session is closed",
                code="input_audio_buffer_overflow",
            )
            return
        if self.item is not None:
            self.wake.set()
        self._drop_stale_partial()

    def _detect(self, turns: Turns, samples: np.ndarray) -> None:
        for event in turns.feed(samples, floor=self.timeline.start, now=self.timeline.end):
            if isinstance(event, Quiet):
                self.timeline.drop_before(event.before)
            elif isinstance(event, Started):
                self._start(Item(new_id("item"), event.start, heard=event.heard))
            elif isinstance(event, Stopped):
                assert self.item is not None
                item, item.speech_end = self.item, event.speech_end
                self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": _ms(event.end), "item_id": item.id})
                self._commit(item, event.end, keep_from=event.keep_from)
            else:
                assert isinstance(event, Cut) and self.item is not None
                self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": _ms(event.at), "item_id": self.item.id})
                self._commit(self.item, event.at)
                self._start(Item(new_id("item"), event.at, heard=event.at))

    def _start(self, item: Item) -> None:
        self.item = item
        self.emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": _ms(item.start), "item_id": item.id})

    def _commit(self, item: Item, end: int, *, keep_from: int | None = None) -> None:
        item.audio = self.timeline.view(item.start, end)
        self.timeline.drop_before(end if keep_from is None else keep_from)
        if self.item is item:
            self.item = None
        self.emit({"type": "input_audio_buffer.committed", "item_id": item.id, "previous_item_id": self.previous_item_id})
        self.previous_item_id = item.id
        self.committed.append(item)
        self.wake.set()
        self._drop_stale_partial()

    def commit_buffer(self) -> None:
        buffered = self.timeline.samples if self.item is None else self.timeline.end - max(self.item.start, self.timeline.start)
        if buffered < MIN_COMMIT_S * SAMPLE_RATE:
            raise ClientError(
                f"buffer too small: a commit needs at least {MIN_COMMIT_S * 1000:.0f} ms of audio, and the buffer holds "
                f"{_ms(buffered)} ms",
                code="input_audio_buffer_commit_empty",
            )
        item = self.item or Item(new_id("item"), self.timeline.start, heard=self.timeline.start)
        if self.turns is not None:
            self.turns.reset()
        self._commit(item, self.timeline.end)

    def clear_buffer(self) -> None:
        if self.item is not None:
            self.item.dropped = True
            self.item = None
        if self.turns is not None:
            self.turns.reset()
        self.timeline.drop_before(self.timeline.end)
        self.emit({"type": "input_audio_buffer.cleared"})

    # -- decoding ----------------------------------------------------------------------------

    async def decode_loop(self) -> None:
        """The session's decodes: each committed utterance in order, and between them the
        utterance in progress whenever enough new audio has come (OPENING_PARTIALS of them at
        once until its first delta, one at a time after)."""
        interval = int(self.limits.partial_interval_s * SAMPLE_RATE)
        opening = int(OPENING_INTERVAL_S * SAMPLE_RATE)
        longest = int(self.limits.max_utterance_s * SAMPLE_RATE)
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.closing is None:
                    if self.committed:
                        await self._complete(self.committed.popleft())
                        continue
                    item = self.item
                    if item is None:
                        break
                    early = self._early_decode_end()
                    if early is not None:
                        before, item.decoded_until = item.decoded_until, early
                        await self._partial(item, early, before)
                        continue
                    if self._speech_end() is not None:
                        break  # a silence: its early decode comes next, unless speech resumes
                    side_by_side = not item.sent and self.last_partial_s <= self.limits.partial_interval_s
                    if len(self.partials) >= (OPENING_PARTIALS if side_by_side else 1):
                        break  # woken again when one ends
                    backoff = int(PARTIAL_BACKOFF * self.last_partial_s * SAMPLE_RATE)
                    wait = opening if side_by_side else max(interval, backoff)
                    if self.timeline.end - max(item.decoded_until, item.heard) < wait:
                        break
                    if self.timeline.end - item.start > longest:
                        break  # no turn detection, and the client has not committed for long: no partials
                    task = asyncio.create_task(self._partial(item, self.timeline.end, item.decoded_until, draft=True))
                    item.decoded_until = self.timeline.end
                    self.partials.add(task)
                    task.add_done_callback(self._partial_ended)
        finally:
            for task in self.partials:
                task.cancel()

    def _partial_ended(self, task: asyncio.Task[None]) -> None:
        self.partials.discard(task)
        self.wake.set()

    def _drop_stale_partial(self) -> None:
        """Cancel the partial decodes under way once a decode that makes them stale is due: the
        early decode of a silence, or the utterance's completion. A decode already in a batch
        runs on, but the next starts at once, on the Transcriber's other worker or replica."""
        if self.partials and (self.committed or self._early_decode_end() is not None):
            for task in self.partials:
                task.cancel()

    def _speech_end(self) -> int | None:
        """Server VAD: where the utterance in progress has stopped, if a silence is heard (Turns.speech_end)."""
        if self.item is None or self.turns is None:
            return None
        return self.turns.speech_end(self.timeline.end)

    def _early_decode_end(self) -> int | None:
        """Where to decode the utterance in progress to now, ahead of its turn's end: its
        speech has stopped, and no decode yet reaches that far."""
        end = self._speech_end()
        if self.item is None or end is None:
            return None
        return end if self.item.decoded_until < end <= self.timeline.end else None

    async def _partial(self, item: Item, end: int, before: int, *, draft: bool = False) -> None:
        """Decode `item` to `end` (its `decoded_until` already, that was `before`), and send
        the words this decode and the one before agree on that were not sent yet. A `draft`
        decodes in DRAFT_WINDOW: quicker, heard less well; the early decode, which may become the
        completed text, as the completed text decodes (`_completing`)."""
        audio = self.timeline.view(item.start, end)
        started = time.monotonic()
        options = replace(self.config.options, window=DRAFT_WINDOW) if draft else self._completing()
        try:
            text = await self.decoder.transcribe(audio, self.model, options)
            if draft:
                self.last_partial_s = time.monotonic() - started
        except asyncio.CancelledError:
            if item.decoded_until == end:
                item.decoded_until = before  # should the speech go on, the next partial comes as soon
            raise
        except Exception as failure:
            if as_service_error(failure) is None:
                logger.exception("a partial decode of live session %s failed", self.id)
            return  # the completed transcription will say, if it fails too
        if item.decoded is not None and item.decoded[0] >= end:
            return  # a decode of more of the utterance ended first
        item.decoded = (end, text)
        words = text.split()
        stable = min(agreed_words(item.last_words, words), len(words) - UNSURE_TAIL_WORDS)
        item.last_words = words
        if not item.dropped and stable > len(item.sent) and extends(item.sent, words[:stable]):
            self._delta(item, words[len(item.sent) : stable])

    def _delta(self, item: Item, words: list[str]) -> None:
        text = (" " if item.sent else "") + " ".join(words)
        item.sent = [*item.sent, *words]
        self.emit(
            {"type": "conversation.item.input_audio_transcription.delta", "item_id": item.id, "content_index": 0, "delta": text}
        )

    async def _complete(self, item: Item) -> None:
        assert item.audio is not None
        seconds = len(item.audio) / SAMPLE_RATE
        try:
            text = self._decoded_whole(item)
            if text is None:
                text = await self.decoder.transcribe(item.audio, self.model, self._completing())
        except Exception as failure:
            error = as_service_error(failure)
            if error is None:
                logger.exception("the transcription of live session %s's item %s failed", self.id, item.id)
            reason = (
                error.reason if error is not None else f"internal error ({type(failure).__name__}); this is a bug of the service"
            )
            self.emit(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item.id,
                    "content_index": 0,
                    "error": {
                        "type": "transcription_error",
                        "code": str(error.status if error else 500),
                        "message": reason,
                        "param": None,
                    },
                }
            )
            return
        finally:
            item.audio = np.zeros(0, np.float32)  # the buffer limit counts it no more
        words = text.split()
        if len(words) > len(item.sent) and extends(item.sent, words):
            self._delta(item, words[len(item.sent) :])
        self.context = carried(self.context, text, CARRIED_CHARS_PER_TOKEN * self.limits.context_tokens)
        self.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": round(seconds, 3)},
            }
        )

    def _completing(self) -> DecodeOptions:
        """The options of a decode whose text may be completed: in UTTERANCE_WINDOW, prompted
        with the session's `prompt`, then its last completed words (Limits.context_tokens of
        them). Every session's context is as long once it has said enough, and the completions
        of different sessions share the Transcriber's batches. Urgent: the speaker waits for it."""
        return replace(
            self.config.options,
            window=UTTERANCE_WINDOW,
            context=self.context or None,
            context_tokens=self.limits.context_tokens,
            urgent=True,
        )

    @staticmethod
    def _decoded_whole(item: Item) -> str | None:
        """The text of a partial decode that heard all of the utterance's speech (it reached
        as far into the silence that ended the turn as `_speech_end`): the early decode's, never
        a draft's (drafts start only while no silence is heard). The completed text, with no
        decode again."""
        if item.speech_end is None or item.decoded is None:
            return None
        end, text = item.decoded
        return text if end >= item.speech_end else None

    # -- the whole session -------------------------------------------------------------------

    async def watch(self) -> None:
        """The session's time limits: its length, and how long the client may say nothing."""
        while self.closing is None:
            now = time.monotonic()
            if time.time() - self.created >= self.limits.max_session_s:
                self.fatal(
                    f"the session reached its limit of {self.limits.max_session_s:g} s (realtime_max_session_s); open a new one",
                    code="session_expired",
                )
            elif now - self.last_client_event >= self.limits.idle_timeout_s:
                self.fatal(
                    f"no client event for {self.limits.idle_timeout_s:g} s (realtime_idle_timeout_s); the session is closed",
                    code="session_idle_timeout",
                )
            await asyncio.sleep(min(0.25, self.limits.idle_timeout_s / 4))

    async def run(self, receive: Callable[[], Awaitable[str | bytes | None]], send: Callable[[str], Awaitable[None]]) -> Closing:
        """Run the session until the client leaves (a None from `receive`) or the session
        ends; then the events already queued are sent (for a few seconds at most) and the
        reason to close with is returned."""
        self.emit({"type": "session.created", "session": self.session_object()})

        async def reader() -> None:
            while self.closing is None:
                message = await receive()
                if message is None:
                    self.end(Closing(NORMAL_CLOSE, "the client closed the session"))
                    return
                await self.handle(message)

        async def writer() -> None:
            while True:
                event = await self.outbox.get()
                try:
                    await send(json.dumps(event))
                except Exception:  # the client is gone: nothing more can reach it
                    self.end(Closing(NORMAL_CLOSE, "the client went away"))
                    return
                finally:
                    self.outbox.task_done()

        tasks = [asyncio.ensure_future(job) for job in (reader(), self.decode_loop(), self.watch())]
        sending = asyncio.ensure_future(writer())
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            done, _ = await asyncio.wait([*tasks, sending, ended], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not ended and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            closing = self.closing or Closing(NORMAL_CLOSE, "")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if closing.code != POLICY_CLOSE:  # a client that does not read gets nothing more
                try:
                    async with asyncio.timeout(5):
                        await asyncio.wait(
                            [asyncio.ensure_future(self.outbox.join()), sending], return_when=asyncio.FIRST_COMPLETED
                        )
                except TimeoutError:
                    pass
            return closing
        finally:
            for task in [*tasks, sending, ended]:
                task.cancel()
            await asyncio.gather(*tasks, sending, ended, return_exceptions=True)
