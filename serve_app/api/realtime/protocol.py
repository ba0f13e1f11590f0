"""The wire of OpenAI's Realtime API as a transcription session speaks it: event and item ids,
the error a client event gets, why a session closes and the WebSocket's close codes, the
subprotocols a browser offers, and the client events not served here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

__all__ = [
    "CLIENT_EVENTS_NOT_SERVED",
    "KEY_SUBPROTOCOL",
    "NORMAL_CLOSE",
    "POLICY_CLOSE",
    "SUBPROTOCOL",
    "TRY_AGAIN_LATER",
    "ClientError",
    "Closing",
    "new_id",
]

CLIENT_EVENTS_NOT_SERVED = frozenset(
    {
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)
NORMAL_CLOSE = 1000
POLICY_CLOSE = 1008
TRY_AGAIN_LATER = 1013
SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class ClientError(Exception):
    """A client event the session cannot take: answered with `error`, the session lives on."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@dataclass(frozen=True, slots=True)
class Closing(Exception):
    """Why a session ends: the close code and reason the WebSocket closes with."""

    code: int
    reason: str
