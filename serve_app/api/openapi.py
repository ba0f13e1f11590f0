"""The OpenAPI 3.1 document of both APIs, served at /openapi.json.

Written as data beside the routes it describes; tests/test_openapi.py checks that every route
of the app is in it and nothing else is, and fuzzes the running service against it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors() -> dict[str, Any]:
    """Every failure answers the same JSON error body, whatever its status."""
    return {"default": _json(_ERROR, "an error, with a reason that says what to do")}


_SSE = {"text/event-stream": {"schema": {"type": "string"}}}

_AUDIO_FORM = {
    "type": "object",
    "required": ["file", "model"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "audio or video, any container FFmpeg reads"},
        "model": {"type": "string", "description": "a model id or alias of GET /v1/models"},
        "language": {"type": "string", "description": "ISO-639-1 code, or auto"},
        "response_format": {"type": "string", "enum": ["json", "verbose_json", "text", "srt", "vtt"]},
        "prompt": {"type": "string", "maxLength": 4096},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": ["segment", "word"]}},
        "stream": {"type": "boolean"},
    },
}


_SPEAKER_FIELDS = {
    "diarization_model": {"type": "string", "description": "a diarization model of GET /v1/models"},
    "num_speakers": {"type": "integer", "minimum": 1, "maximum": 64},
    "min_speakers": {"type": "integer", "minimum": 1, "maximum": 64},
    "max_speakers": {"type": "integer", "minimum": 1, "maximum": 64},
}


def _audio_operation(summary: str, *, speakers: bool = False) -> dict[str, Any]:
    form = _AUDIO_FORM | {"properties": _AUDIO_FORM["properties"] | _SPEAKER_FIELDS} if speakers else _AUDIO_FORM
    return {
        "summary": summary,
        "parameters": [{"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean"}}],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
        "responses": {
            "200": {
                "description": "the transcript in the response_format asked for, or a stream of events",
                "content": {
                    "application/json": {"schema": _ref("Transcription")},
                    "text/plain": {"schema": {"type": "string"}},
                    "application/x-subrip": {"schema": {"type": "string"}},
                    "text/vtt": {"schema": {"type": "string"}},
                    **_SSE,
                },
            },
            **_errors(),
        },
    }


_SCHEMAS: dict[str, Any] = {
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
    "JobRequest": {
        "type": "object",
        "required": ["path"],
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string"},
            "language": {"type": "string"},
            "format": {"type": "string", "enum": ["txt", "vtt", "srt", "tsv", "json", "all"]},
            "callback": {"type": "string"},
            "output_path": {"type": "string"},
            "model": {"type": "string"},
            "priority": {"type": "integer"},
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

_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def openapi_document() -> dict[str, Any]:
    health = {"summary": "whether the service can take work", "responses": {"200": _json(_ref("Status"), "ready"), **_errors()}}
    model_body = {
        "type": "object",
        "required": ["path"],
        "properties": {"path": {"type": "string", "description": "a size name, a hub repository[@revision] or a ggml file name"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whisper-serve",
            "version": "0.1.0",
            "description": "go-whisper's /v1 API (a superset of OpenAI's audio API) and the job API",
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"apiKey": []}],
        "paths": {
            "/v1/ping": {"get": health},
            "/v1/health": {"get": health},
            "/v1/models": {
                "get": {
                    "summary": "the models present",
                    "responses": {"200": _json(_ref("ModelList"), "the models"), **_errors()},
                },
                "post": {
                    "summary": "download a model from the hub",
                    "parameters": [{"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean"}}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": model_body},
                            "application/x-www-form-urlencoded": {"schema": model_body},
                            "multipart/form-data": {"schema": model_body},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "present already, or a stream of progress",
                            "content": {"application/json": {"schema": _ref("Model")}, **_SSE},
                        },
                        "201": _json(_ref("Model"), "downloaded now"),
                        **_errors(),
                    },
                },
            },
            "/v1/models/{id}": {
                "get": {
                    "summary": "one model",
                    "parameters": _ID,
                    "responses": {"200": _json(_ref("Model"), "the model"), **_errors()},
                },
                "delete": {
                    "summary": "remove a model",
                    "parameters": _ID,
                    "responses": {"200": _json(_ref("Model"), "the model removed"), **_errors()},
                },
            },
            "/v1/audio/transcriptions": {"post": _audio_operation("transcribe audio")},
            "/v1/audio/translations": {"post": _audio_operation("transcribe audio into English")},
            "/v1/audio/diarize": {"post": _audio_operation("transcribe audio, with who spoke when", speakers=True)},
            "/transcription/job": {
                "post": {
                    "summary": "queue a job on a media file of the server's disk",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("JobRequest")}}},
                    "responses": {"202": _json(_ref("Job"), "queued"), **_errors()},
                },
            },
            "/transcription/job/{id}": {
                "get": {"summary": "a job", "parameters": _ID, "responses": {"200": _json(_ref("Job"), "the job"), **_errors()}},
                "delete": {
                    "summary": "remove a queued job",
                    "parameters": _ID,
                    "responses": {"204": {"description": "removed"}, **_errors()},
                },
            },
            "/transcription/jobs": {
                "get": {
                    "summary": "queued, running, and the last 10 finished jobs",
                    "responses": {"200": _json({"type": "array", "items": _ref("Job")}, "the jobs"), **_errors()},
                },
            },
            "/stats": {"get": {"summary": "job counts", "responses": {"200": _json(_ref("Stats"), "the counts"), **_errors()}}},
            "/smi": {
                "get": {
                    "summary": "nvidia-smi of each GPU node",
                    "responses": {
                        "200": {"description": "text for people", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        **_errors(),
                    },
                },
            },
            "/openapi.json": {
                "get": {"summary": "this document", "responses": {"200": _json({"type": "object"}, "the document")}}
            },
        },
    }
