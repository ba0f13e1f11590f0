"""A submitted body becomes a job or a 400 naming the field; a job's JSON is the old server's and more."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from serve_app.errors import BadRequest
from serve_app.jobs import JOB_FORMATS, Job, JobStatus, parse_submission

MODELS = {"tiny.en", "base", "large-v2"}


def submit(body: Any) -> Job:
    return parse_submission(body, default_model="tiny.en", model_exists=MODELS.__contains__)


def refusal(body: Any) -> str:
    with pytest.raises(BadRequest) as refused:
        submit(body)
    assert refused.value.status == 400
    return refused.value.reason


def test_a_path_alone_takes_the_defaults() -> None:
    job = submit({"path": "/data/media/a.mp3"})
    assert uuid.UUID(job.id).version == 4
    assert (job.path, job.language, job.format, job.model, job.callback, job.output_path, job.priority) == (
        "/data/media/a.mp3",
        "",
        "txt",
        "tiny.en",
        "",
        "",
        1000,
    )
    assert (job.status, job.progress, job.attempts) == (JobStatus.QUEUED, 0, 0)
    assert submit({"path": "/data/media/a.mp3"}).id != job.id


def test_every_field_of_the_spec_example() -> None:
    job = submit(
        {
            "path": "/data/media/a.mp3",
            "language": "en",
            "format": "vtt",
            "callback": "http://host/hook",
            "output_path": "/data/out/",
            "model": "large-v2",
            "priority": 5,
        }
    )
    assert (job.language, job.format, job.callback, job.output_path, job.model, job.priority) == (
        "en",
        "vtt",
        "http://host/hook",
        "/data/out/",
        "large-v2",
        5,
    )


def test_null_and_empty_optional_fields_take_their_defaults() -> None:
    job = submit({"path": "/m/a.mp3", "language": None, "format": "", "model": " ", "callback": None, "priority": None})
    assert (job.language, job.format, job.model, job.callback, job.priority) == ("", "txt", "tiny.en", "", 1000)


@pytest.mark.parametrize("language", ["", "auto", "AUTO"])
def test_an_empty_or_auto_language_is_detected(language: str) -> None:
    assert submit({"path": "/m/a.mp3", "language": language}).language == ""


def test_languages_are_codes_of_the_list() -> None:
    assert submit({"path": "/m/a.mp3", "language": "DE"}).language == "de"
    assert submit({"path": "/m/a.mp3", "language": "haw"}).language == "haw"
    assert "language 'xx'" in refusal({"path": "/m/a.mp3", "language": "xx"})
    assert "'english'" in refusal({"path": "/m/a.mp3", "language": "english"})


@pytest.mark.parametrize("job_format", JOB_FORMATS)
def test_each_format_of_the_spec(job_format: str) -> None:
    assert submit({"path": "/m/a.mp3", "format": job_format}).format == job_format


def test_a_format_is_read_in_any_case() -> None:
    assert submit({"path": "/m/a.mp3", "format": " VTT "}).format == "vtt"


def test_an_unknown_format_is_refused_with_the_list() -> None:
    reason = refusal({"path": "/m/a.mp3", "format": "mp3"})
    assert "format must be one of txt, vtt, srt, tsv, json, all" in reason
    assert "'mp3'" in reason


def test_a_model_that_no_download_could_give_is_refused() -> None:
    reason = refusal({"path": "/m/a.mp3", "model": "huge"})
    assert reason.startswith("model 'huge' is not in the model folder and cannot be downloaded: huge is not a model we can serve")
    assert "faster-whisper size" in reason
    assert "cannot be downloaded" in refusal({"path": "/m/a.mp3", "model": "https://example.com/model.bin"})
    assert "cannot be downloaded" in refusal({"path": "/m/a.mp3", "model": "../../etc"})


@pytest.mark.parametrize(
    "model",
    # Every name of the old API's list, and hub ids: queued, to be downloaded when the job runs.
    [
        *("tiny", "tiny.en", "base.en", "small", "small.en", "medium", "medium.en", "large", "large-v1", "large-v3"),
        *("openai/whisper-large-v3", "openai/whisper-tiny.en", "Systran/faster-whisper-small", "ggml-base.bin"),
    ],
)
def test_a_model_that_is_not_present_but_can_be_downloaded_is_queued(model: str) -> None:
    assert submit({"path": "/m/a.mp3", "model": model}).model == model


def test_the_default_model_is_checked_too() -> None:
    with pytest.raises(BadRequest, match="model 'gone'"):
        parse_submission({"path": "/m/a.mp3"}, default_model="gone", model_exists=MODELS.__contains__)
    assert parse_submission({"path": "/m/a.mp3"}, default_model="large-v2", model_exists=set().__contains__).model == "large-v2"


def test_without_a_catalogue_check_any_model_name_passes() -> None:
    assert parse_submission({"path": "/m/a.mp3", "model": "anything"}, default_model="tiny.en").model == "anything"


@pytest.mark.parametrize("callback", ["ftp://host/hook", "host/hook", "http://", "javascript:alert(1)", "http://host:port/"])
def test_a_callback_must_be_an_http_url(callback: str) -> None:
    assert "callback must be an http or https URL" in refusal({"path": "/m/a.mp3", "callback": callback})


def test_https_callbacks_are_taken() -> None:
    assert submit({"path": "/m/a.mp3", "callback": "https://hooks.example.com:8443/j?x=1"}).callback == (
        "https://hooks.example.com:8443/j?x=1"
    )


def test_a_path_is_required() -> None:
    assert "path is required" in refusal({"language": "en"})
    assert "path is required" in refusal({"path": "  "})


def test_an_unknown_field_is_named() -> None:
    reason = refusal({"path": "/m/a.mp3", "status": "COMPLETED"})
    assert "unknown field 'status'" in reason
    assert "path, language, format" in reason


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("path", 5, "a number"),
        ("language", ["en"], "an array"),
        ("format", {"f": 1}, "an object"),
        ("model", True, "a boolean"),
        ("callback", 1, "a number"),
        ("output_path", False, "a boolean"),
    ],
)
def test_a_field_of_the_wrong_type_is_named(field: str, value: Any, what: str) -> None:
    body = {"path": "/m/a.mp3", field: value}
    assert refusal(body) == f"{field} must be a string, not {what}"


@pytest.mark.parametrize("priority", ["1", 1.5, True, [1]])
def test_priority_must_be_an_integer(priority: Any) -> None:
    assert refusal({"path": "/m/a.mp3", "priority": priority}).startswith("priority must be an integer")


def test_priority_is_bounded_so_it_fits_the_store() -> None:
    assert submit({"path": "/m/a.mp3", "priority": -(2**31)}).priority == -(2**31)
    assert "priority must be between" in refusal({"path": "/m/a.mp3", "priority": 2**63})


def test_every_field_to_fix_is_named_at_once() -> None:
    reason = refusal({"path": 5, "format": "mp3", "priority": "1", "colour": "blue"})
    assert reason.split("; ") == [
        "path must be a string, not a number",
        "format must be one of txt, vtt, srt, tsv, json, all, not 'mp3'",
        "priority must be an integer, not a string",
        "unknown field 'colour': a job takes path, language, format, output_path, callback, model, priority",
    ]


def test_an_unknown_field_is_refused_even_when_null() -> None:
    assert "unknown field 'colour'" in refusal({"path": "/m/a.mp3", "colour": None})


@pytest.mark.parametrize("body", [[], "path", 3, None])
def test_the_body_must_be_an_object(body: Any) -> None:
    assert refusal(body).startswith("the body must be a JSON object")


def test_the_json_has_the_old_servers_keys_in_order_then_ours() -> None:
    job = Job(
        path="/data/media/a.mp3",
        output_path="/data/out/",
        model="large-v2",
        language="en",
        format="vtt",
        created_at=1_700_000_000.25,
        started_at=1_700_000_001.0,
        duration=12.34567,
        outputs=["/data/out/a.vtt"],
    )
    body = json.loads(json.dumps(job.to_json()))
    assert list(body)[:11] == [
        "id",
        "path",
        "language",
        "format",
        "output_path",
        "progress",
        "status",
        "result",
        "callback",
        "model",
        "Duration",
    ]
    assert set(body) - set(list(body)[:11]) == {
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "outputs",
        "priority",
        "attempts",
        "callback_error",
        "stage",
    }
    assert body["status"] == "QUEUED"
    assert body["Duration"] == 12.346
    assert body["outputs"] == ["/data/out/a.vtt"]
    assert body["finished_at"] is None
    assert body["created_at"] == "2023-11-14T22:13:20.250Z"
    assert datetime.fromisoformat(body["started_at"]).timestamp() == 1_700_000_001.0
