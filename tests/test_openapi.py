"""/openapi.json: true to the routes, and the running service fuzzed against it."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from starlette.datastructures import UploadFile
from starlette.routing import Route

import serve_app
from serve_app.api import requests
from serve_app.api.app import all_routes
from serve_app.api.auth import PAGE_PATHS
from serve_app.api.openapi import openapi_document
from serve_app.api.requests import DiarizationForm, ModelDownload, TranscriptionForm
from serve_app.errors import BadRequest
from serve_app.jobs import job
from serve_app.jobs.job import JobRequest
from serve_app.pipeline import Pipeline
from serve_app.validation import RequestModel, request_schemas


def operations_of_the_app() -> set[tuple[str, str]]:
    """The HTTP operations of the API: not the WebSocket of live sessions (/v1/realtime, which
    OpenAPI cannot describe), nor the try-it page's static files."""
    routes = all_routes(pipeline=Pipeline(model_store=None, transcriber=None), readiness=None, job_queue=None)
    return {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower())
        for route in routes
        if isinstance(route, Route) and route.path not in PAGE_PATHS
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_the_document_has_every_route_and_nothing_else() -> None:
    documented = {(path, method) for path, operations in openapi_document()["paths"].items() for method in operations}
    assert documented == operations_of_the_app()


def test_each_request_body_is_its_models_schema() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    bodies = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                bodies[(path, method)] = content["schema"]["$ref"].rsplit("/", 1)[1]
    assert bodies == {
        ("/v1/models", "post"): "ModelDownload",
        ("/v1/audio/transcriptions", "post"): "TranscriptionForm",
        ("/v1/audio/translations", "post"): "TranscriptionForm",
        ("/v1/audio/diarize", "post"): "DiarizationForm",
        ("/transcription/job", "post"): "JobRequest",
    }
    for model in (TranscriptionForm, DiarizationForm, ModelDownload, JobRequest):
        assert schemas[model.__name__] == request_schemas(model)[model.__name__]


def test_the_audio_forms_document_what_they_take() -> None:
    form = openapi_document()["components"]["schemas"]["DiarizationForm"]
    assert form["required"] == ["file", "model"]
    assert form["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": form["properties"]["file"]["description"],
    }
    assert form["properties"]["response_format"]["enum"] == [
        "json",
        "verbose_json",
        "text",
        "srt",
        "vtt",
        "diarized_json",
        "rttm",
    ]
    assert form["properties"]["timestamp_granularities[]"]["items"]["enum"] == ["segment", "word"]
    assert form["properties"]["prompt"]["maxLength"] == requests.MAX_PROMPT_CHARS
    assert (form["properties"]["temperature"]["minimum"], form["properties"]["temperature"]["maximum"]) == (
        requests.MIN_TEMPERATURE,
        requests.MAX_TEMPERATURE,
    )
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        assert form["properties"][name] == {
            "type": "integer",
            "minimum": 1,
            "maximum": requests.MAX_SPEAKERS,
            "description": form["properties"][name]["description"],
        }
    transcription = openapi_document()["components"]["schemas"]["TranscriptionForm"]
    assert set(form["properties"]) - set(transcription["properties"]) == {
        "diarization_model",
        "num_speakers",
        "min_speakers",
        "max_speakers",
    }


def test_the_job_request_documents_what_it_takes() -> None:
    body = openapi_document()["components"]["schemas"]["JobRequest"]
    assert body["required"] == ["path"]
    assert body["additionalProperties"] is False
    assert list(body["properties"]) == list(job.SUBMISSION_FIELDS)
    assert body["properties"]["format"]["enum"] == list(job.JOB_FORMATS)
    priority = body["properties"]["priority"]
    assert (priority["type"], priority["minimum"], priority["maximum"]) == ("integer", job.MIN_PRIORITY, job.MAX_PRIORITY)


# What each model takes at the least; forms get every value as text, JSON bodies as JSON.
VALID: dict[type[RequestModel], dict[str, Any]] = {
    TranscriptionForm: {"model": "base"},
    DiarizationForm: {"model": "base"},
    ModelDownload: {"path": "small.en"},
    JobRequest: {"path": "/data/a.mp3"},
}
FORMS = (TranscriptionForm, DiarizationForm)
# The JSON schema keywords the request schemas may use: pydantic writes a constraint it cannot
# place (a bound behind a validator) as a keyword of its own, which no OpenAPI tool reads.
KEYWORDS = {"type", "format", "description", "default", "enum", "items", "minimum", "maximum", "maxLength"}


def bodies_at_the_bounds() -> list[tuple[type[RequestModel], str, Any, bool]]:
    """(model, field, value, whether the model takes it) at and just past every bound the
    document shows."""
    cases = []
    for model in VALID:
        for name, schema in request_schemas(model)[model.__name__]["properties"].items():
            integer = schema.get("type") == "integer"
            step = 1 if integer else 0.001
            if "minimum" in schema:
                cases += [(model, name, schema["minimum"], True), (model, name, schema["minimum"] - step, False)]
            if "maximum" in schema:
                cases += [(model, name, schema["maximum"], True), (model, name, schema["maximum"] + step, False)]
            if "maxLength" in schema:
                cases += [(model, name, "x" * schema["maxLength"], True), (model, name, "x" * (schema["maxLength"] + 1), False)]
    return cases


def test_every_limit_of_the_document_is_checked_below() -> None:
    checked = {(model.__name__, name) for model, name, _, _ in bodies_at_the_bounds()}
    assert checked == {
        ("TranscriptionForm", "prompt"),
        ("TranscriptionForm", "temperature"),
        ("DiarizationForm", "prompt"),
        ("DiarizationForm", "temperature"),
        ("DiarizationForm", "num_speakers"),
        ("DiarizationForm", "min_speakers"),
        ("DiarizationForm", "max_speakers"),
        ("JobRequest", "priority"),
    }


@pytest.mark.parametrize(("model", "name", "value", "taken"), bodies_at_the_bounds())
def test_the_models_enforce_the_bounds_the_document_shows(model: type[RequestModel], name: str, value: Any, taken: bool) -> None:
    body = VALID[model] | {name: value}
    if model in FORMS:
        body = {key: str(value) for key, value in body.items()} | {"file": UploadFile(io.BytesIO(b"RIFF"), filename="a.wav")}
    if taken:
        model.from_body(body)
    else:
        with pytest.raises(BadRequest) as refused:
            model.from_body(body)
        assert refused.value.reason.startswith(f"{name} ")


def test_the_request_schemas_use_only_keywords_openapi_tools_read() -> None:
    for model in VALID:
        for name, schema in request_schemas(model)[model.__name__]["properties"].items():
            assert set(schema) <= KEYWORDS, (model.__name__, name, schema)


LIMITS = [
    (requests, r"\b4096\b", ["MAX_PROMPT_CHARS = 4096"]),
    (requests, r"\b64\b", ["MAX_SPEAKERS = 64"]),
    (job, r"2\*\*31", ["MIN_PRIORITY = -(2**31)", "MAX_PRIORITY = 2**31 - 1"]),
]


@pytest.mark.parametrize(("home", "number", "definitions"), LIMITS)
def test_each_limit_is_written_once(home, number: str, definitions: list[str]) -> None:
    """The request layer (the API, the job body, the validation they share) writes each limit's
    number in its constant only: the models, their refusals and the document read it there."""
    source = Path(home.__file__).read_text()
    assert all(definition in source for definition in definitions)
    assert len(re.findall(number, source)) == len(definitions)
    root = Path(serve_app.__file__).parent
    layer = [*root.glob("api/*.py"), root / "jobs/job.py", root / "validation.py", root / "options.py"]
    assert [path.name for path in layer if path != Path(home.__file__) and re.search(number, path.read_text())] == []


FUZZ_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_500_and_match_the_document(service) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) == ("DELETE", "/v1/models/{id}"):
            continue  # a lucky guess would delete an embedded model the other tests use

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck))
        def call(case) -> None:
            case.call_and_validate(checks=FUZZ_CHECKS, timeout=60)

        call()
        fuzzed.append((operation.path, operation.method.lower()))
    # schemathesis leaves out the document it was loaded from.
    assert set(fuzzed) == operations_of_the_app() - {("/v1/models/{id}", "delete"), ("/openapi.json", "get")}
