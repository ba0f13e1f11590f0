"""What an audio request asks for, from its form: validated by the form's model (requests.py)
and turned into the value types the pipeline takes.

Pure: no Ray, no engine. Every refusal is a BadRequest whose reason says what to send instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import FormData

from serve_app.api.references import known_speakers
from serve_app.api.requests import DiarizationForm, TranscriptionForm, form_input
from serve_app.errors import BadRequest
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
    """Set for task `diarize`, and for a transcription answered in `diarized_json`."""


def parse_request_options(fields: FormData, *, task: Task, stream: bool = False) -> RequestOptions:
    """Validate the form of an audio request, its file part included (TranscriptionForm, or
    DiarizationForm for task `diarize`); BadRequest naming each field to fix.

    `stream` is True when the query string or the Accept header already asked for a stream
    (go-whisper's events, whatever the form says); the form field alone asks for OpenAI's.
    A transcription in `diarized_json` is diarized (with the app's diarization model); known
    speakers' references are decoded here (api/references.py).
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
    diarized = task == "diarize" or form.response_format == "diarized_json"
    if task == "translate" and form.response_format == "diarized_json":
        raise BadRequest("response_format diarized_json is for /v1/audio/transcriptions and /v1/audio/diarize")
    if task != "diarize" and form.response_format == "rttm":
        raise BadRequest("response_format rttm is who spoke when: ask /v1/audio/diarize for it")
    if form.response_format == "rttm" and (stream or form.stream):
        raise BadRequest("response_format rttm is not streamed: the turns are known only at the end")
    if form.known_speaker_names and not diarized:
        raise BadRequest("known speakers name the speakers of a diarized answer: send response_format diarized_json")
    speakers = None
    if diarized:
        counts = form if isinstance(form, DiarizationForm) else None
        speakers = SpeakerOptions(
            model=counts.diarization_model if counts else None,
            num_speakers=counts.num_speakers if counts else None,
            min_speakers=counts.min_speakers if counts else None,
            max_speakers=counts.max_speakers if counts else None,
            known_speakers=known_speakers(form.known_speaker_names, form.known_speaker_references),
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
