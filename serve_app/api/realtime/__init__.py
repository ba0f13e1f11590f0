"""Live transcription: OpenAI's Realtime API transcription sessions over a WebSocket,
`GET /v1/realtime?intent=transcription` (the openai SDK's `client.realtime.connect`).

A session takes audio as the client sends it (`input_audio_buffer.append`), finds the
utterances with Silero VAD (`server_vad`) or takes them as the client commits them, decodes
the utterance in progress again as audio arrives, and sends the words that two consecutive
decodes agree on as `conversation.item.input_audio_transcription.delta`; the whole text of each
utterance follows as `.completed`. Every decode hears an encoder window fitted to its audio
rather than Whisper's whole 30 s (DecodeOptions.window): the partial decodes are drafts, in
windows only a little longer than their audio (session.DRAFT_WINDOW); the completed text's
decode has a wider margin (session.UTTERANCE_WINDOW). Every decode goes through the
Transcriber's deployment handle, as the HTTP routes' do: cross-request batching, replicas and
their backpressure apply to live sessions alike; the decodes whose text is completed go before
the other work waiting there (DecodeOptions.urgent).

In rooms: `protocol` (ids, errors, close codes), `config` (what `session.update` sets),
`timeline` (the session's audio and utterances), `turns` (server VAD: where utterances start
and stop), `session` (`RealtimeSession`: the protocol over any transport, which tests drive
in-process, and its tuning), `routes` (`RealtimeRoutes`: it on a Starlette WebSocket route,
through the service's Transcriber).
"""

from serve_app.api.realtime.config import SessionConfig
from serve_app.api.realtime.protocol import Closing
from serve_app.api.realtime.routes import RealtimeRoutes, ServiceDecoder
from serve_app.api.realtime.session import Decoder, Limits, RealtimeSession

__all__ = ["Closing", "Decoder", "Limits", "RealtimeRoutes", "RealtimeSession", "ServiceDecoder", "SessionConfig"]
