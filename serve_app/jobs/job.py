"""A transcription job: its value type, its JSON, and the validation of a submitted body.

The JSON keeps the old "Whisper Api" server's job object key for key (`Duration` with its
capital D included) so its clients read ours, with what they lacked beside it: `error`,
the times, `outputs`, `priority`, `attempts` and `stage`.

Pure: no Ray, no disk. Whether `path` and `output_path` may be used is paths.py's
decision, whether the callback's host may be called is targets.py's, and submission.py
runs all three in order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

from serve_app.errors import BadRequest
from serve_app.formats import JOB_FORMATS, OUTPUT_FORMATS
from serve_app.languages import normalise_language
from serve_app.validation import RequestModel, Required

__all__ = [
    "DEFAULT_PRIORITY",
    "JOB_FORMATS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "OUTPUT_FORMATS",
    "SUBMISSION_FIELDS",
    "Job",
    "JobRequest",
    "JobStatus",
    "callback_body",
    "check_callback_url",
    "parse_submission",
]


# The bounds of a 32-bit integer: any order a user needs, and never an overflow in SQLite.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
DEFAULT_PRIORITY = 1000
"""A job's priority when it names none (ai-api's rule): higher runs first, so a job that asks
for less (1-999) runs after the ordinary ones, and one that asks for more before them."""

_PATH = "the absolute path of a media file in one of the job API's media folders"


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
    priority: int = DEFAULT_PRIORITY
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
    stage: str = ""
    """What a RUNNING job is doing: "downloading model" (its model is not in the model folder
    yet) or "transcribing"; empty when it is not running."""

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
            "stage": self.stage,
        }


def callback_body(job: Job) -> bytes:
    """The bytes a callback POSTs, and signs: the job's JSON, compact, in UTF-8."""
    return json.dumps(job.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


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


def _callback_url(url: str) -> str:
    try:
        check_callback_url(url)
    except BadRequest as refused:
        raise ValueError(refused.reason) from None
    return url


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class JobRequest(RequestModel):
    """The JSON body of `POST /transcription/job`. Absent, null and empty optional fields take
    their defaults: language detected, format `txt`, the app's default model, priority 1000."""

    body_name: ClassVar[str] = "a job"

    path: Annotated[str, Required(f"path is required: {_PATH}")] = Field(description=_PATH)
    language: Annotated[str | None, AfterValidator(normalise_language)] = Field(
        None, description="ISO-639-1 code of the speech; absent, empty or auto: detected"
    )
    format: Annotated[Literal[JOB_FORMATS], BeforeValidator(_lower)] = Field(  # type: ignore[valid-type]
        "txt", description="the file to write, or all of them"
    )
    output_path: str | None = Field(
        None,
        description="the folder to write to, inside the job API's output folders; default: beside the media file when that is inside one, else the first",
    )
    callback: Annotated[str | None, AfterValidator(_callback_url)] = Field(
        None, description="an http(s) URL the job's JSON is POSTed to when it ends"
    )
    model: str | None = Field(None, description="a model id or alias of GET /v1/models; default: the app's")
    priority: Annotated[int, Field(strict=True, ge=MIN_PRIORITY, le=MAX_PRIORITY)] = Field(
        DEFAULT_PRIORITY,
        description="higher runs first, equal ones in submission order; absent: 1000, so a lower one runs after the ordinary jobs",
    )


SUBMISSION_FIELDS = tuple(JobRequest.input_fields())


def parse_submission(
    body: Any,
    *,
    default_model: str,
    model_exists: Callable[[str], bool] | None = None,
) -> Job:
    """A new QUEUED job from the parsed JSON body of `POST /transcription/job` (JobRequest), or
    BadRequest naming each field to fix.

    `model_exists(name)` says whether the model, the app's `default_model` when none is sent,
    is in the catalogue; one that is not is accepted when it can be downloaded (a faster-whisper
    size, a hub id: the job downloads it before it runs, see models.py) and refused otherwise.
    Without `model_exists` the caller checks the model. `output_path` is left empty when not
    sent: JobFolders.admit fills in the default folder. JobStore.submit sets `created_at`.
    """
    request = JobRequest.from_body(body)
    model = request.model or default_model
    if model_exists is not None and not model_exists(model):
        from serve_app.jobs.models import check_model_name  # the hub's name rules: heavier imports

        check_model_name(model)
    return Job(
        path=request.path,
        output_path=request.output_path or "",
        model=model,
        language=request.language or "",  # the job's JSON keeps "" for detected
        format=request.format,
        callback=request.callback or "",
        priority=request.priority,
    )
