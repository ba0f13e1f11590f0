"""A transcription job: its value type, its JSON, and the validation of a submitted body.

The JSON keeps the old "Whisper Api" server's job object key for key (`Duration` with its
capital D included) so its clients read ours, with what they lacked beside it: `error`,
the times, `outputs`, `priority` and `attempts`.

Pure: no Ray, no disk. Whether `path` and `output_path` may be used is paths.py's
decision, whether the callback's host may be called is targets.py's, and submission.py
runs all three in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from serve_app.errors import BadRequest
from serve_app.languages import UnknownLanguage, normalise_language

__all__ = [
    "JOB_FORMATS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "OUTPUT_FORMATS",
    "SUBMISSION_FIELDS",
    "Job",
    "JobStatus",
    "check_callback_url",
    "parse_submission",
]

OUTPUT_FORMATS = ("txt", "vtt", "srt", "tsv", "json")
"""The files a job can write, one extension each."""

JOB_FORMATS = (*OUTPUT_FORMATS, "all")
"""What `format` may be: one output, or `all` of them."""

SUBMISSION_FIELDS = ("path", "language", "format", "output_path", "callback", "model", "priority")

# The bounds of a 32-bit integer: any order a user needs, and never an overflow in SQLite.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Job:
    """One job as the store keeps it. Times are Unix seconds; the JSON shows them in ISO 8601.

    `path` and `output_path` are kept as the user sent them (outputs are named after the
    file as they named it); they are checked again against the allowed folders when the job
    runs, since a folder may have changed in between.
    """

    path: str
    output_path: str
    model: str
    language: str = ""
    format: str = "txt"
    callback: str = ""
    priority: int = 0
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: JobStatus = JobStatus.QUEUED
    progress: int = 0
    result: str = ""
    error: str = ""
    outputs: list[str] = field(default_factory=list)
    duration: float = 0.0
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    callback_error: str = ""
    """Why the callback was not delivered; empty when it was, is still due, or there is none."""

    def to_json(self) -> dict[str, Any]:
        """The job object of the API: the old server's keys in its order, then ours."""
        return {
            "id": self.id,
            "path": self.path,
            "language": self.language,
            "format": self.format,
            "output_path": self.output_path,
            "progress": self.progress,
            "status": str(self.status),
            "result": self.result,
            "callback": self.callback,
            "model": self.model,
            "Duration": round(self.duration, 3),
            "error": self.error,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "outputs": list(self.outputs),
            "priority": self.priority,
            "attempts": self.attempts,
            "callback_error": self.callback_error,
        }


def check_callback_url(url: str) -> None:
    """A callback must be an absolute http(s) URL with a host; BadRequest otherwise."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise BadRequest(f"callback must be an http or https URL such as https://host/hook, not {url!r}")


def _string(body: Mapping[str, Any], name: str) -> str | None:
    """The field's value stripped; None when absent, null or empty."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, not {_json_type(value)}")
    return value.strip() or None


def _json_type(value: Any) -> str:
    match value:
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def parse_submission(
    body: Any,
    *,
    default_model: str,
    model_exists: Callable[[str], bool] | None = None,
) -> Job:
    """A new QUEUED job from the parsed JSON body of `POST /transcription/job`, or BadRequest
    naming the field to fix.

    Absent, null and empty optional fields take their defaults: language detected, format
    `txt`, the app's `default_model`, priority 0. `model_exists(name)` checks the model
    against the catalogue; without it the caller must. `output_path` is left empty when not
    sent: JobFolders.admit fills in the default folder. JobStore.submit sets `created_at`.
    """
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object with at least a path, not {_json_type(body)}")
    unknown = sorted(set(body) - set(SUBMISSION_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}: a job takes {', '.join(SUBMISSION_FIELDS)}")

    path = _string(body, "path")
    if path is None:
        raise BadRequest("path is required: the absolute path of a media file in one of the job API's media folders")

    try:
        language = normalise_language(_string(body, "language")) or ""  # the job's JSON keeps "" for detected
    except UnknownLanguage as exc:
        raise BadRequest(str(exc)) from None

    job_format = (_string(body, "format") or "txt").lower()
    if job_format not in JOB_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(JOB_FORMATS)}, not {job_format!r}")

    model = _string(body, "model") or default_model
    if model_exists is not None and not model_exists(model):
        raise BadRequest(f"model {model!r} is not present: send one of the models GET /v1/models lists")

    callback = _string(body, "callback") or ""
    if callback:
        check_callback_url(callback)

    priority = body.get("priority")
    if priority is None:
        priority = 0
    elif isinstance(priority, bool) or not isinstance(priority, int):
        raise BadRequest(f"priority must be an integer (higher runs first), not {_json_type(priority)}")
    elif not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise BadRequest(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, not {priority}")

    return Job(
        path=path,
        output_path=_string(body, "output_path") or "",
        model=model,
        language=language,
        format=job_format,
        callback=callback,
        priority=priority,
    )
