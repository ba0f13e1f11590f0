"""The form of an audio request: parsed, validated, and refused with a reason."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from serve_app.api.options import parse_request_options
from serve_app.errors import BadRequest
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions
from serve_app.pipeline import check_model_fits


def parse(task: str = "transcribe", header_stream: bool = False, **fields: str | list[str]):
    items = [(k, v) for k, values in fields.items() for v in (values if isinstance(values, list) else [values])]
    return parse_request_options(FormData(items), task=task, stream=header_stream)


def test_defaults() -> None:
    options = parse(model="tiny.en")
    assert (options.model, options.response_format, options.stream) == ("tiny.en", "json", False)
    assert options.decode == DecodeOptions(task="transcribe")


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


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "model is required"),
        ({"model": "  "}, "model is required"),
        ({"model": "base", "response_format": "docx"}, "response_format must be one of json, verbose_json, text, srt, vtt"),
        ({"model": "base", "language": "klingon"}, "language 'klingon'"),
        ({"model": "base", "temperature": "warm"}, "temperature must be a number"),
        ({"model": "base", "temperature": "1.5"}, "between 0 and 1"),
        ({"model": "base", "timestamp_granularities[]": "char"}, "segment, word"),
        ({"model": "base", "timestamp_granularities[]": "word"}, "verbose_json"),
        ({"model": "base", "prompt": "x" * 5000}, "at most 4096"),
    ],
)
def test_refusals(fields: dict, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse(**fields)
    assert reason in refused.value.reason


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
