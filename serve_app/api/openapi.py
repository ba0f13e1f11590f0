"""The OpenAPI 3.1 document of both APIs, served at /openapi.json, generated: the schema of
each request body from its model (requests.py, jobs/job.py: the rules the route enforces,
limits included), and the rest from the table of operations below and the schemas of the
answers beside it.

tests/test_openapi.py checks that every route of the app is in it and nothing else is, that
its bounds are the ones the models enforce, and fuzzes the running service against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from serve_app.api.requests import DiarizationForm, ModelDownload, TranscriptionForm
from serve_app.jobs.job import JobRequest
from serve_app.validation import SCHEMA_REF, RequestModel, request_schemas

__all__ = ["OPERATIONS", "Operation", "openapi_document"]

JSON = "application/json"
FORM = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=name)}


def _json(schema: dict[str, Any] | str, description: str) -> dict[str, Any]:
    """An answer of JSON: `schema`, or the component schema of that name."""
    return {"description": description, "content": {JSON: {"schema": _ref(schema) if isinstance(schema, str) else schema}}}


_TEXT = {"type": "string"}
_EVENTS = {"text/event-stream": {"schema": _TEXT}}
_TRANSCRIPT = {
    "200": {
        "description": "the transcript in the response_format asked for, or a stream of events",
        "content": {
            JSON: {"schema": _ref("Transcription")},
            "text/plain": {"schema": _TEXT},
            "application/x-subrip": {"schema": _TEXT},
            "text/vtt": {"schema": _TEXT},
            **_EVENTS,
        },
    }
}
_HEALTH = {"200": _json("Status", "ready")}


@dataclass(frozen=True, slots=True)
class Operation:
    """One route and method of the app, as the document shows it."""

    path: str
    method: str
    summary: str
    responses: dict[str, Any]
    """By status; every operation also answers the error body (`default`)."""
    body: type[RequestModel] | None = None
    body_types: tuple[str, ...] = (JSON,)
    streams: bool = False
    """Takes `?stream=true` for a text/event-stream answer."""

    def document(self) -> dict[str, Any]:
        operation: dict[str, Any] = {"summary": self.summary}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _TEXT} for name in re.findall(r"\{(\w+)\}", self.path)
        ]
        if self.streams:
            parameters.append({"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean"}})
        if parameters:
            operation["parameters"] = parameters
        if self.body is not None:
            schema = _ref(self.body.__name__)
            operation["requestBody"] = {"required": True, "content": {kind: {"schema": schema} for kind in self.body_types}}
        operation["responses"] = self.responses | {"default": _json("Error", "an error, with a reason that says what to do")}
        return operation


OPERATIONS: tuple[Operation, ...] = (
    Operation("/v1/ping", "get", "whether the service can take work", _HEALTH),
    Operation("/v1/health", "get", "whether the service can take work", _HEALTH),
    Operation("/v1/models", "get", "the models present", {"200": _json("ModelList", "the models")}),
    Operation(
        "/v1/models",
        "post",
        "download a model from the hub",
        {
            "200": {
                "description": "present already, or a stream of progress",
                "content": {JSON: {"schema": _ref("Model")}, **_EVENTS},
            },
            "201": _json("Model", "downloaded now"),
        },
        body=ModelDownload,
        body_types=(JSON, URLENCODED, FORM),
        streams=True,
    ),
    Operation("/v1/models/{id}", "get", "one model", {"200": _json("Model", "the model")}),
    Operation("/v1/models/{id}", "delete", "remove a model", {"200": _json("Model", "the model removed")}),
    Operation("/v1/audio/transcriptions", "post", "transcribe audio", _TRANSCRIPT, TranscriptionForm, (FORM,), streams=True),
    Operation(
        "/v1/audio/translations", "post", "transcribe audio into English", _TRANSCRIPT, TranscriptionForm, (FORM,), streams=True
    ),
    Operation(
        "/v1/audio/diarize", "post", "transcribe audio, with who spoke when", _TRANSCRIPT, DiarizationForm, (FORM,), streams=True
    ),
    Operation(
        "/transcription/job",
        "post",
        "queue a job on a media file of the server's disk",
        {"202": _json("Job", "queued")},
        JobRequest,
    ),
    Operation("/transcription/job/{id}", "get", "a job", {"200": _json("Job", "the job")}),
    Operation("/transcription/job/{id}", "delete", "remove a queued job", {"204": {"description": "removed"}}),
    Operation(
        "/transcription/jobs",
        "get",
        "queued, running, and the last 10 finished jobs",
        {"200": _json({"type": "array", "items": _ref("Job")}, "the jobs")},
    ),
    Operation("/stats", "get", "job counts", {"200": _json("Stats", "the counts")}),
    Operation(
        "/smi",
        "get",
        "nvidia-smi of each GPU node",
        {"200": {"description": "text for people", "content": {"text/plain": {"schema": _TEXT}}}},
    ),
    Operation("/openapi.json", "get", "this document", {"200": _json({"type": "object"}, "the document")}),
)

# The answers' schemas. The request bodies' come from their models.
RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code", "reason"],
        "properties": {
            "code": {"type": "integer"},
            "reason": {"type": "string"},
            "error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}}},
        },
    },
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "Model": {
        "type": "object",
        "required": ["id", "object", "path", "created"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "path": {"type": "string"},
            "created": {"type": "integer"},
            "kind": {"type": "string", "enum": ["transcription", "diarization"]},
            "source": {"type": "string"},
            "aliases": {"type": "array", "items": {"type": "string"}},
            "multilingual": {"type": "boolean"},
            "size_bytes": {"type": "integer"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "models"],
        "properties": {"object": {"const": "list"}, "models": {"type": "array", "items": _ref("Model")}},
    },
    "Segment": {
        "type": "object",
        "required": ["id", "start", "end", "text"],
        "properties": {
            "id": {"type": "integer"},
            "start": {"type": "number"},
            "end": {"type": "number"},
            "text": {"type": "string"},
            "speaker": {"type": "string"},
            "speaker_turn": {"type": "boolean"},
        },
    },
    "Transcription": {
        "type": "object",
        "required": ["task", "language", "duration", "text", "segments"],
        "properties": {
            "task": {"type": "string", "enum": ["transcribe", "translate", "diarize"]},
            "language": {"type": "string"},
            "duration": {"type": "number"},
            "text": {"type": "string"},
            "segments": {"type": "array", "items": _ref("Segment")},
            "words": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "path", "status", "progress", "Duration"],
        "properties": {
            "id": {"type": "string"},
            "path": {"type": "string"},
            "language": {"type": "string"},
            "format": {"type": "string"},
            "output_path": {"type": "string"},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "status": {"type": "string", "enum": ["QUEUED", "RUNNING", "COMPLETED", "FAILED"]},
            "result": {"type": "string"},
            "callback": {"type": "string"},
            "model": {"type": "string"},
            "Duration": {"type": "number"},
            "error": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "string"}},
            "callback_error": {"type": "string"},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["Queued", "Running", "Processed"],
        "properties": {"Queued": {"type": "integer"}, "Running": {"type": "integer"}, "Processed": {"type": "integer"}},
    },
}


def openapi_document() -> dict[str, Any]:
    bodies = request_schemas(*dict.fromkeys(operation.body for operation in OPERATIONS if operation.body is not None))
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = operation.document()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whisper-serve",
            "version": "0.1.0",
            "description": "go-whisper's /v1 API (a superset of OpenAI's audio API) and the job API; "
            "every /v1 path also answers under /api/v1 (go-whisper's default base)",
        },
        "components": {
            "schemas": RESPONSE_SCHEMAS | bodies,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"apiKey": []}],
        "paths": paths,
    }
