"""A transcription session's settings: what `session.update` may set, checked field by field
(a ClientError names the wrong one), and the session object the server sends back."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from serve_app.api.realtime.protocol import ClientError
from serve_app.api.requests import MAX_PROMPT_CHARS
from serve_app.engine.live import RATES, InputFormat, TurnDetection
from serve_app.options import DecodeOptions

__all__ = ["SessionConfig", "session_object", "updated"]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    format: InputFormat = "audio/pcm"
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)

    @property
    def options(self) -> DecodeOptions:
        return DecodeOptions(task="transcribe", language=self.language, prompt=self.prompt)


def updated(config: SessionConfig, event: dict) -> SessionConfig:
    """`config` as a `session.update` event sets it, or a ClientError that says which field is wrong."""
    session = _expect(event.get("session"), dict, "session")
    if session.get("type") != "transcription":
        raise ClientError("this service holds transcription sessions only: send session.type transcription", param="session.type")
    _only(session, {"type", "audio", "include", "id", "object", "expires_at"}, "session")
    include = session.get("include")
    if include is not None:
        _expect(include, list, "session.include")
    audio = _expect(session.get("audio", {}), dict, "session.audio")
    _only(audio, {"input", "output"}, "session.audio")
    given = _expect(audio.get("input", {}), dict, "session.audio.input")
    _only(given, {"format", "noise_reduction", "transcription", "turn_detection"}, "session.audio.input")
    if "format" in given:
        fmt = _expect(given["format"], dict, "session.audio.input.format")
        kind = fmt.get("type", "audio/pcm")
        if kind not in RATES:
            raise ClientError(
                f"audio format {kind!r} is not served: send audio/pcm (24 kHz), audio/pcmu or audio/pcma",
                param="session.audio.input.format.type",
            )
        if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
            raise ClientError("audio/pcm is 24 kHz only: rate must be 24000", param="session.audio.input.format.rate")
        config = replace(config, format=kind)
    if "noise_reduction" in given and given["noise_reduction"] is not None:
        _expect(given["noise_reduction"], dict, "session.audio.input.noise_reduction")  # accepted; none is applied
    if "transcription" in given and given["transcription"] is not None:
        transcription = _expect(given["transcription"], dict, "session.audio.input.transcription")
        param = "session.audio.input.transcription"
        _only(transcription, {"model", "language", "prompt", "delay", "keywords", "languages"}, param)
        if "model" in transcription:
            config = replace(config, model=_expect(transcription["model"], str, f"{param}.model"))
        if "language" in transcription:
            language = transcription["language"]
            config = replace(config, language=None if language in (None, "") else _expect(language, str, f"{param}.language"))
        if "prompt" in transcription:
            prompt = transcription["prompt"]
            prompt = None if prompt in (None, "") else _expect(prompt, str, f"{param}.prompt")
            if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
                raise ClientError(
                    f"prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are taken "
                    "(Whisper hears only its last 223 tokens)",
                    param=f"{param}.prompt",
                )
            config = replace(config, prompt=prompt)
    if "turn_detection" in given:
        config = replace(config, turn_detection=_turn_detection(given["turn_detection"]))
    return config


def _turn_detection(value: Any) -> TurnDetection | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None
    value = _expect(value, dict, param)
    kind = value.get("type", "server_vad")
    if kind != "server_vad":
        raise ClientError(
            f"turn detection {kind!r} is not served: use server_vad, or null to commit yourself", param=f"{param}.type"
        )
    _only(
        value,
        {
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "create_response",
            "interrupt_response",
            "idle_timeout_ms",
        },
        param,
    )
    turn = TurnDetection()
    threshold = value.get("threshold", turn.threshold)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise ClientError("threshold must be a number from 0 to 1", param=f"{param}.threshold")
    padding = value.get("prefix_padding_ms", turn.prefix_padding_ms)
    silence = value.get("silence_duration_ms", turn.silence_duration_ms)
    for name, number in (("prefix_padding_ms", padding), ("silence_duration_ms", silence)):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 10_000:
            raise ClientError(f"{name} must be a whole number of milliseconds from 0 to 10000", param=f"{param}.{name}")
    return TurnDetection(threshold=float(threshold), prefix_padding_ms=padding, silence_duration_ms=silence)


def session_object(config: SessionConfig, session_id: str, *, expires_at: int) -> dict:
    """The session as `session.created` and `session.updated` carry it."""
    fmt: dict[str, Any] = {"type": config.format}
    if config.format == "audio/pcm":
        fmt["rate"] = RATES["audio/pcm"]
    transcription: dict[str, Any] = {"model": config.model}
    if config.language is not None:
        transcription["language"] = config.language
    if config.prompt is not None:
        transcription["prompt"] = config.prompt
    turn = config.turn_detection
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "expires_at": expires_at,
        "include": [],
        "audio": {
            "input": {
                "format": fmt,
                "noise_reduction": None,
                "transcription": transcription,
                "turn_detection": None
                if turn is None
                else {
                    "type": "server_vad",
                    "threshold": turn.threshold,
                    "prefix_padding_ms": turn.prefix_padding_ms,
                    "silence_duration_ms": turn.silence_duration_ms,
                },
            }
        },
    }


def _expect(value: Any, kind: type, param: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names: dict[type, str] = {str: "a string", dict: "an object", list: "an array"}
        what = names.get(kind, kind.__name__)
        raise ClientError(f"{param} must be {what}", param=param)
    return value


def _only(value: dict, allowed: set[str], param: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ClientError(f"unknown parameter {param}.{unknown[0]}", code="unknown_parameter", param=f"{param}.{unknown[0]}")
