"""The form of a transcription, translation or diarization request, parsed and validated.

Pure: no Ray, no engine. Every refusal is a BadRequest whose reason says what to send instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import FormData

from serve_app.errors import BadRequest
from serve_app.formats import RESPONSE_FORMATS
from serve_app.languages import UnknownLanguage, normalise_language
from serve_app.options import DecodeOptions, SpeakerOptions, Task

__all__ = ["RequestOptions", "parse_request_options"]

GRANULARITIES = ("segment", "word")
MAX_PROMPT_CHARS = 4096
MAX_SPEAKERS = 64
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    task: Task
    model: str
    response_format: str = "json"
    stream: bool = False
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    speakers: SpeakerOptions | None = None
    """Set for task `diarize` only."""


def _field(fields: FormData, name: str) -> str | None:
    value = fields.get(name)
    if value is None or not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _temperature(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"temperature must be a number between 0 and 1, not {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise BadRequest(f"temperature must be between 0 and 1, not {value:g}")
    return value


def _granularities(fields: FormData) -> set[str]:
    values = fields.getlist("timestamp_granularities[]") + fields.getlist("timestamp_granularities")
    chosen = {v.strip() for value in values if isinstance(value, str) for v in value.split(",") if v.strip()}
    unknown = chosen - set(GRANULARITIES)
    if unknown:
        raise BadRequest(f"timestamp_granularities must be among {', '.join(GRANULARITIES)}, not {', '.join(sorted(unknown))}")
    return chosen


def _count(fields: FormData, name: str) -> int | None:
    raw = _field(fields, name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_SPEAKERS:
        raise BadRequest(f"{name} must be a whole number from 1 to {MAX_SPEAKERS}, not {raw!r}")
    return int(raw)


def _speaker_options(fields: FormData) -> SpeakerOptions:
    speakers = SpeakerOptions(
        model=_field(fields, "diarization_model"),
        num_speakers=_count(fields, "num_speakers"),
        min_speakers=_count(fields, "min_speakers"),
        max_speakers=_count(fields, "max_speakers"),
    )
    if speakers.num_speakers is not None and (speakers.min_speakers or speakers.max_speakers):
        raise BadRequest("send num_speakers, or min_speakers and max_speakers, not both")
    if speakers.min_speakers and speakers.max_speakers and speakers.min_speakers > speakers.max_speakers:
        raise BadRequest(f"min_speakers ({speakers.min_speakers}) is more than max_speakers ({speakers.max_speakers})")
    return speakers


def parse_request_options(fields: FormData, *, task: Task, stream: bool = False) -> RequestOptions:
    """Validate the form fields of an audio request (the file is checked by the caller).

    `stream` is True when the query string or the Accept header already asked for a stream.
    """
    model = _field(fields, "model")
    if model is None:
        raise BadRequest("model is required: send the id of a model listed by GET /v1/models")

    response_format = _field(fields, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {response_format!r}")

    try:
        language = normalise_language(_field(fields, "language"))
    except UnknownLanguage as exc:
        raise BadRequest(str(exc)) from None

    prompt = _field(fields, "prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")

    granularities = _granularities(fields)
    if "word" in granularities and response_format != "verbose_json":
        raise BadRequest("word timestamps need response_format verbose_json")

    stream = stream or (_field(fields, "stream") or "").lower() in _TRUE
    decode = DecodeOptions(
        task="translate" if task == "translate" else "transcribe",
        language=language,
        prompt=prompt,
        temperature=_temperature(_field(fields, "temperature")),
        word_timestamps="word" in granularities,
    )
    speakers = _speaker_options(fields) if task == "diarize" else None
    return RequestOptions(
        task=task, model=model, response_format=response_format, stream=stream, decode=decode, speakers=speakers
    )
