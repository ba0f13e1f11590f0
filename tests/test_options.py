"""The form of an audio request: parsed, validated by its model, and refused with a reason."""

from __future__ import annotations

import io

import pytest
from starlette.datastructures import FormData, UploadFile

from serve_app.api.options import parse_request_options
from serve_app.api.requests import MAX_SPEAKERS, ModelDownload
from serve_app.errors import BadRequest
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions, SpeakerOptions
from serve_app.pipeline import check_model_fits

NO_FILE = object()


def parse(task: str = "transcribe", header_stream: bool = False, file=None, **fields: str | list[str]):
    items = [(k, v) for k, values in fields.items() for v in (values if isinstance(values, list) else [values])]
    if file is not NO_FILE:
        items.append(("file", file if file is not None else UploadFile(io.BytesIO(b"RIFF"), filename="a.wav")))
    return parse_request_options(FormData(items), task=task, stream=header_stream)


def refusal(task: str = "transcribe", **fields) -> str:
    with pytest.raises(BadRequest) as refused:
        parse(task, **fields)
    return refused.value.reason


def test_defaults() -> None:
    options = parse(model="tiny.en")
    assert (options.model, options.response_format, options.stream) == ("tiny.en", "json", False)
    assert options.decode == DecodeOptions(task="transcribe")
    assert options.speakers is None


def test_every_field() -> None:
    options = parse(
        task="translate",
        model=" base ",
        language="DE",
        response_format="verbose_json",
        prompt="Names: Anna.",
        temperature="0.4",
        stream="true",
        **{"timestamp_granularities[]": ["segment", "word"]},
    )
    assert options.model == "base"
    assert options.stream is True
    assert options.decode == DecodeOptions(
        task="translate", language="de", prompt="Names: Anna.", temperature=0.4, word_timestamps=True
    )


@pytest.mark.parametrize("language", ["auto", "", "AUTO"])
def test_auto_language_means_detect(language: str) -> None:
    assert parse(model="base", language=language).decode.language is None


def test_stream_from_query_or_accept_header() -> None:
    assert parse(header_stream=True, model="base").stream is True
    assert parse(model="base", stream="false").stream is False
    assert parse(model="base", stream="maybe").stream is False
    assert parse(model="base", stream="YES").stream is True


@pytest.mark.parametrize(
    "fields",
    [
        {"timestamp_granularities[]": "segment,word"},
        {"timestamp_granularities": "word"},
        {"timestamp_granularities[]": "segment", "timestamp_granularities": " word , "},
    ],
)
def test_granularities_come_with_or_without_brackets_and_comma_separated(fields: dict) -> None:
    assert parse(model="base", response_format="verbose_json", **fields).decode.word_timestamps is True


def test_the_last_of_a_repeated_field_counts() -> None:
    assert parse(model=["tiny.en", "base"]).model == "base"


def test_fields_the_form_does_not_take_are_left_alone() -> None:
    """OpenAI's SDK sends fields we do not use; speaker counts mean nothing to a transcription."""
    assert parse(model="base", chunking_strategy="auto", num_speakers="²").model == "base"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "model is required"),
        ({"model": "  "}, "model is required"),
        ({"model": "base", "response_format": "docx"}, "response_format must be one of json, verbose_json, text, srt, vtt"),
        ({"model": "base", "language": "klingon"}, "language 'klingon'"),
        ({"model": "base", "temperature": "warm"}, "temperature must be a number"),
        ({"model": "base", "temperature": "1.5"}, "between 0 and 1"),
        ({"model": "base", "temperature": "-0.1"}, "between 0 and 1"),
        ({"model": "base", "temperature": "nan"}, "temperature must be a number"),
        ({"model": "base", "timestamp_granularities[]": "char"}, "segment, word"),
        ({"model": "base", "timestamp_granularities[]": "word"}, "verbose_json"),
        ({"model": "base", "prompt": "x" * 5000}, "at most 4096"),
        ({"model": "base", "file": "not a file part"}, "file is required"),
        ({"model": "base", "file": NO_FILE}, "file is required"),
    ],
)
def test_refusals(fields: dict, reason: str) -> None:
    assert reason in refusal(**fields)


def test_a_refusal_names_every_field_to_fix_once() -> None:
    reason = refusal(file=NO_FILE, language="xx", temperature="2", **{"timestamp_granularities[]": "a,b"})
    assert reason.split("; ") == [
        "file is required: send the audio or video as a file part named file",
        "model is required: send the id of a model listed by GET /v1/models",
        "language 'xx' is not a code Whisper knows: use one such as en, de or fr, or auto to detect it",
        "temperature must be between 0 and 1, not 2",
        "timestamp_granularities[] must be one of segment, word, not 'a'",
    ]


def test_a_prompt_at_the_limit_passes() -> None:
    assert parse(model="base", prompt="x" * 4096).decode.prompt == "x" * 4096


# -- diarization -------------------------------------------------------------------------------


def test_speaker_fields() -> None:
    options = parse("diarize", model="base", diarization_model=" pyannote ", min_speakers="2", max_speakers="05")
    assert options.speakers == SpeakerOptions(model="pyannote", min_speakers=2, max_speakers=5)
    assert parse("diarize", model="base").speakers == SpeakerOptions()
    assert parse("diarize", model="base", num_speakers=str(MAX_SPEAKERS)).speakers.num_speakers == MAX_SPEAKERS


@pytest.mark.parametrize("field", ["num_speakers", "min_speakers", "max_speakers"])
@pytest.mark.parametrize("value", ["²", "١", "Ⅻ", "2.5", "5.0", "+5", "1_0", "-1", "two"])
def test_a_speaker_count_is_ascii_digits(field: str, value: str) -> None:
    assert refusal("diarize", model="base", **{field: value}) == f"{field} must be a whole number from 1 to 64, not {value!r}"


@pytest.mark.parametrize(("value", "shown"), [("0", "0"), ("65", "65"), ("000", "000")])
def test_a_speaker_count_is_from_1_to_64(value: str, shown: str) -> None:
    assert refusal("diarize", model="base", num_speakers=value) == f"num_speakers must be between 1 and 64, not {shown}"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"min_speakers": "3", "max_speakers": "2"}, "min_speakers (3) is more than max_speakers (2)"),
        ({"num_speakers": "2", "max_speakers": "3"}, "send num_speakers, or min_speakers and max_speakers, not both"),
        ({"num_speakers": "2", "min_speakers": "1"}, "not both"),
    ],
)
def test_speaker_counts_one_way_or_the_other(fields: dict, reason: str) -> None:
    assert reason in refusal("diarize", model="base", **fields)


# -- the model download ------------------------------------------------------------------------


def test_the_model_download_takes_a_path() -> None:
    assert ModelDownload.from_body({"path": " small.en ", "other": 1}).path == "small.en"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, 'missing path: send the model to download, such as {"path": "small.en"}'),
        ({"path": "  "}, "missing path"),
        ({"path": None}, "missing path"),
        ({"path": 5}, "path must be a string, not a number"),
        ([], "the body must be a JSON object with at least path, not an array"),
    ],
)
def test_the_model_download_refusals(body, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        ModelDownload.from_body(body)
    assert reason in refused.value.reason


# -- what a model can do -----------------------------------------------------------------------

ENGLISH = ModelInfo(id="tiny.en", path="/m/tiny.en", created=0, multilingual=False)
MULTI = ModelInfo(id="base", path="/m/base", created=0)


@pytest.mark.parametrize(
    ("model", "options", "reason"),
    [
        (ENGLISH, DecodeOptions(task="translate"), "English-only and cannot translate"),
        (ENGLISH, DecodeOptions(language="fr"), "cannot transcribe language 'fr'"),
        (ModelInfo(id="pyannote", path="/m/p", created=0, kind="diarization"), DecodeOptions(), "diarization model"),
    ],
)
def test_a_model_that_cannot_do_the_task_is_refused(model: ModelInfo, options: DecodeOptions, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_model_fits(model, options)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("model", "options"),
    [
        (ENGLISH, DecodeOptions(language="en")),
        (ENGLISH, DecodeOptions()),
        (MULTI, DecodeOptions(task="translate", language="fr")),
    ],
)
def test_a_model_that_can_do_the_task_passes(model: ModelInfo, options: DecodeOptions) -> None:
    check_model_fits(model, options)
