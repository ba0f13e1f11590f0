"""The bodies of the /v1 routes, declared: the audio forms of transcription, translation and
diarization, and the model download. Each field's rule and limit is written here once; the
models enforce them (serve_app/validation.py turns a failure into one BadRequest) and the
OpenAPI document is generated from them (openapi.py).

Forms arrive as multipart/form-data: every value is a string, a name may come more than once
(the last one counts, except for a list such as `timestamp_granularities[]`, which may also
come without the brackets and as comma-separated values), an object comes as one field a key
(`chunking_strategy[type]`, as OpenAI's SDK sends it) or as JSON, and fields we do not know are
left alone, since OpenAI's SDK sends some we do not use.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.datastructures import FormData, UploadFile

from serve_app.diarization.known import MAX_KNOWN_SPEAKERS
from serve_app.formats import RESPONSE_FORMATS
from serve_app.languages import normalise_language
from serve_app.validation import RequestModel, Required

__all__ = [
    "GRANULARITIES",
    "MAX_PROMPT_CHARS",
    "MAX_SPEAKERS",
    "MAX_SPEAKER_NAME_CHARS",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "PATH_EXAMPLE",
    "DiarizationForm",
    "ModelDownload",
    "ServerVad",
    "TranscriptionForm",
    "form_input",
]

MAX_PROMPT_CHARS = 4096
MIN_TEMPERATURE = 0.0
MAX_TEMPERATURE = 1.0
MAX_SPEAKERS = 64
MAX_SPEAKER_NAME_CHARS = 80
GRANULARITIES = ("segment", "word")
_ANONYMOUS = re.compile(r"SPEAKER_\d+")
TRUE = ("1", "true", "yes", "on")
"""What a `stream` form field says to ask for a stream; anything else is no."""

FILE_REQUIRED = "file is required: send the audio or video as a file part named file"
PATH_EXAMPLE = '{"path": "small.en"}'


def _upload(value: Any) -> UploadFile:
    if not isinstance(value, UploadFile):
        raise ValueError(FILE_REQUIRED)
    return value


def _ascii_digits(value: Any) -> Any:
    """Speaker counts are ASCII digits: pydantic's integers also take "5.0", "+5" and "1_0",
    and Python's take digits of other scripts ("²", "١")."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise PydanticCustomError("int_parsing", "not a whole number")
    return value


def _comma_separated(value: Any) -> Any:
    items = value if isinstance(value, list) else [value]
    parts = [part for item in items for part in (item.split(",") if isinstance(item, str) else [item])]
    return [part.strip() if isinstance(part, str) else part for part in parts if not isinstance(part, str) or part.strip()]


def _yes(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in TRUE)


class ServerVad(BaseModel):
    """OpenAI's `chunking_strategy` object: cut the audio where its VAD hears speech stop."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["server_vad"]
    prefix_padding_ms: int | None = Field(None, ge=0, description="audio kept before speech starts, in ms")
    silence_duration_ms: int | None = Field(None, ge=0, description="silence that ends speech, in ms")
    threshold: float | None = Field(None, ge=0, le=1, description="the VAD's sensitivity, 0 to 1")


CHUNKING_CHOICES = "auto, or an object with type server_vad"


def _chunking(value: Any) -> Any:
    """`auto`, `server_vad`, a JSON object, or the object's fields (`chunking_strategy[type]`)."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "server_vad"):
            return text if text == "auto" else ServerVad.model_validate({"type": "server_vad"})
        if not text.startswith("{"):
            raise ValueError(f"chunking_strategy must be {CHUNKING_CHOICES}, not {text[:40]!r}")
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"chunking_strategy is not valid JSON; send {CHUNKING_CHOICES}") from None
    if not isinstance(value, dict):
        raise ValueError(f"chunking_strategy must be {CHUNKING_CHOICES}")
    try:
        return ServerVad.model_validate(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "type"
        raise ValueError(f"chunking_strategy {where}: {first['msg']}; send {CHUNKING_CHOICES}") from None


Upload = Annotated[
    Any,
    PlainValidator(_upload),
    WithJsonSchema({"type": "string", "format": "binary"}),
    Required(FILE_REQUIRED),
    Field(description="audio or video: wav, mp3, m4a, mp4, webm, ogg, flac and the other containers the service reads"),
]
if TYPE_CHECKING:
    ResponseFormatName = str  # a key of RESPONSE_FORMATS: the Literal below is built at run time
else:
    ResponseFormatName = Literal[tuple(RESPONSE_FORMATS)]
Granularity = Literal[GRANULARITIES]  # type: ignore[valid-type]
# The bounds before the validator: after it, pydantic still enforces them but writes them into
# the JSON schema as ge/le, which no OpenAPI tool reads (tests/test_openapi.py checks this).
SpeakerCount = Annotated[int | None, Field(ge=1, le=MAX_SPEAKERS), BeforeValidator(_ascii_digits)]


class TranscriptionForm(RequestModel):
    """`POST /v1/audio/transcriptions` and `/v1/audio/translations`: multipart/form-data."""

    model_config = ConfigDict(extra="ignore")

    file: Upload
    model: Annotated[str, Required("model is required: send the id of a model listed by GET /v1/models")] = Field(
        description="a model id or alias of GET /v1/models"
    )
    language: Annotated[str | None, AfterValidator(normalise_language)] = Field(
        None, description="ISO-639-1 code of the speech, or auto (or nothing) to detect it"
    )
    response_format: ResponseFormatName = "json"
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="text that came before, or names to spell")
    temperature: float | None = Field(
        None,
        ge=MIN_TEMPERATURE,
        le=MAX_TEMPERATURE,
        allow_inf_nan=False,
        description="the decoder's sampling temperature; none or 0: greedy",
    )
    timestamp_granularities: Annotated[list[Granularity], BeforeValidator(_comma_separated)] = Field(
        [],
        alias="timestamp_granularities[]",
        description="segment, word, or both; words need response_format verbose_json",
    )
    stream: Annotated[bool, BeforeValidator(_yes)] = Field(
        False,
        description="OpenAI's way to ask for a stream, which gets OpenAI's events (transcript.text.delta, then "
        "transcript.text.done); the query parameter stream=true and Accept: text/event-stream get go-whisper's",
    )
    chunking_strategy: Annotated[
        Literal["auto"] | ServerVad | None,
        BeforeValidator(_chunking),
        # As a form field: a string, or the object's fields one a part, as OpenAI's SDK sends them.
        WithJsonSchema({"type": "string"}),
    ] = Field(
        None,
        description="OpenAI's chunking: auto, or a server_vad object as JSON or as the fields chunking_strategy[type], "
        "chunking_strategy[threshold], chunking_strategy[prefix_padding_ms], chunking_strategy[silence_duration_ms]. "
        "Accepted; the service always cuts the audio at speech with its own VAD, whose settings these do not change",
    )
    include: Annotated[list[str], BeforeValidator(_comma_separated)] = Field(
        [],
        alias="include[]",
        description="OpenAI's extras, such as logprobs: accepted; none is returned (verbose_json has each segment's avg_logprob)",
    )
    known_speaker_names: list[str] = Field(
        [],
        alias="known_speaker_names[]",
        description=f"up to {MAX_KNOWN_SPEAKERS} names, each for the recording at the same place in known_speaker_references[]",
    )
    known_speaker_references: list[str] = Field(
        [],
        alias="known_speaker_references[]",
        description="data URLs (data:audio/wav;base64,...) of 2 to 10 s of each known speaker's voice, in any format file takes",
    )

    @model_validator(mode="after")
    def _words_need_verbose_json(self) -> TranscriptionForm:
        if "word" in self.timestamp_granularities and self.response_format != "verbose_json":
            raise ValueError("word timestamps need response_format verbose_json")
        return self

    @model_validator(mode="after")
    def _a_reference_for_each_name(self) -> TranscriptionForm:
        names, references = self.known_speaker_names, self.known_speaker_references
        if len(names) > MAX_KNOWN_SPEAKERS:
            raise ValueError(f"at most {MAX_KNOWN_SPEAKERS} known speakers can be sent, not {len(names)}")
        if len(names) != len(references):
            raise ValueError(
                f"send a known_speaker_references[] for each known_speaker_names[]: {len(names)} names, {len(references)} references"
            )
        for name in names:
            if not name.strip() or len(name) > MAX_SPEAKER_NAME_CHARS:
                raise ValueError(f"a known speaker's name is 1 to {MAX_SPEAKER_NAME_CHARS} characters, not {name!r}")
            if _ANONYMOUS.fullmatch(name):
                raise ValueError(f"{name!r} is how anonymous speakers are labelled: give the known speaker another name")
        if len(set(names)) != len(names):
            raise ValueError("known_speaker_names[] names a speaker twice")
        return self


class DiarizationForm(TranscriptionForm):
    """`POST /v1/audio/diarize`: the transcription form, and who speaks."""

    diarization_model: str | None = Field(None, description="a diarization model of GET /v1/models; default: the app's")
    num_speakers: SpeakerCount = Field(None, description="how many speakers there are, when known")
    min_speakers: SpeakerCount = Field(None, description="at least this many speakers (instead of num_speakers)")
    max_speakers: SpeakerCount = Field(None, description="at most this many speakers (instead of num_speakers)")

    @model_validator(mode="after")
    def _one_way_to_count(self) -> DiarizationForm:
        if self.num_speakers is not None and (self.min_speakers or self.max_speakers):
            raise ValueError("send num_speakers, or min_speakers and max_speakers, not both")
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers ({self.min_speakers}) is more than max_speakers ({self.max_speakers})")
        return self


class ModelDownload(RequestModel):
    """`POST /v1/models`: JSON, urlencoded or multipart."""

    model_config = ConfigDict(extra="ignore")

    path: Annotated[str, Required(f"missing path: send the model to download, such as {PATH_EXAMPLE}")] = Field(
        description="a size name (small.en), a hub repository[@revision] or a go-whisper ggml file name"
    )


_OBJECT_KEY = re.compile(r"(?P<name>[a-z_]+)\[(?P<key>[a-z_]+)\]")


def form_input(form: FormData, model: type[RequestModel]) -> dict[str, Any]:
    """A form's fields as `model` takes them: the last value of each name, every value of
    a list field, which may be named with or without `[]`, and an object's fields sent one a
    key (`chunking_strategy[type]`) gathered into the object."""
    fields = model.input_fields()
    lists = {name for name, field in fields.items() if get_origin(field.annotation) is list}
    data: dict[str, Any] = {}
    for key, value in form.multi_items():
        name = next((name for name in (key, f"{key}[]") if name in lists), None)
        member = _OBJECT_KEY.fullmatch(key)
        if name is not None:
            data.setdefault(name, []).append(value)
        elif member is not None and member["name"] in fields and member["name"] not in lists:
            if not isinstance(data.get(member["name"]), dict):
                data[member["name"]] = {}
            data[member["name"]][member["key"]] = value
        else:
            data[key] = value
    return data
