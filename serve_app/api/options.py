"""What an audio request asks for, from its form: validated by the form's model (requests.py)
and turned into the value types the pipeline takes.

Pure: no Ray, no engine. Every refusal is a BadRequest whose reason says what to send instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import FormData

from serve_app.api.requests import DiarizationForm, TranscriptionForm, form_input
from serve_app.options import DecodeOptions, SpeakerOptions, Task

__all__ = ["RequestOptions", "parse_request_options"]


@dataclass(frozen=True, slots=True)
class RequestOptions:
    task: Task
    model: str
    response_format: str = "json"
    stream: bool = False
    openai_stream: bool = False
    """The stream was asked for by the `stream` form field alone, OpenAI's way: it gets OpenAI's
    events (api/openai_events.py); the query or the Accept header get go-whisper's (api/sse.py)."""
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    speakers: SpeakerOptions | None = None
    """Set for task `diarize` only."""


def parse_request_options(fields: FormData, *, task: Task, stream: bool = False) -> RequestOptions:
    """Validate the form of an audio request, its file part included (TranscriptionForm, or
    DiarizationForm for task `diarize`); BadRequest naming each field to fix.

    `stream` is True when the query string or the Accept header already asked for a stream
    (go-whisper's events, whatever the form says); the form field alone asks for OpenAI's.
    """
    model = DiarizationForm if task == "diarize" else TranscriptionForm
    form = model.from_body(form_input(fields, model))
    decode = DecodeOptions(
        task="translate" if task == "translate" else "transcribe",
        language=form.language,
        prompt=form.prompt,
        temperature=form.temperature,
        word_timestamps="word" in form.timestamp_granularities,
    )
    speakers = None
    if isinstance(form, DiarizationForm):
        speakers = SpeakerOptions(
            model=form.diarization_model,
            num_speakers=form.num_speakers,
            min_speakers=form.min_speakers,
            max_speakers=form.max_speakers,
        )
    return RequestOptions(
        task=task,
        model=form.model,
        response_format=form.response_format,
        stream=stream or form.stream,
        openai_stream=form.stream and not stream,
        decode=decode,
        speakers=speakers,
    )
