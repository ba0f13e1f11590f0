"""The typed `args` of the application: what `config.yaml` may set, validated before anything binds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["AppSettings"]

_REPO_ID = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SQLITE = "sqlite:///"


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Path("~/.cache/whisper-serve/models")
    """Folder of the model catalogue: one sub-folder a model. On a cluster of several nodes
    it must be storage every node mounts at this path (NFS, EFS, a shared volume)."""

    embedded_models: bool = True
    """Seed the catalogue at start with the models that install from PyPI (tiny.en, and the
    multilingual base assembled from its two parts), so a fresh install works offline."""

    default_model: str = "tiny.en"
    """The model that jobs without a model use, and the one /v1/health requires."""

    openai_model_alias: str = "base"
    """The model that `whisper-1`, the model name OpenAI's SDK and its examples send, stands
    for: a multilingual one (by default the embedded base), so that OpenAI's clients can both
    transcribe and translate with it."""

    diarization_model: str = "pyannote-campplus"
    """The diarization pipeline /v1/audio/diarize uses unless a request names another
    (`diarization_model`): the embedded one, or one downloaded with POST /v1/models."""

    trusted_model_repos: list[str] = []
    """Hub repositories (`org/name`, any revision) whose diarization pipelines pyannote may load
    its own way, unpickling their checkpoints: that runs any code the files hold, so name only
    repositories you trust as you trust your own code. Every other pipeline's models are read
    with `torch.load(weights_only=True)`, and one that cannot be read so is refused (403)."""

    max_loaded_models: int = Field(default=2, ge=1)
    """Models each Transcriber replica, and each Diarizer replica, keeps loaded; the least
    recently used goes first. Ray Serve's model multiplexing holds them
    (`max_num_models_per_replica`) and routes a request to a replica that holds its model."""

    compute_type: str = "auto"
    """CTranslate2 compute type; `auto` is int8 on CPU and float16 on GPU."""

    beam_size: int = Field(default=5, ge=1, le=16)
    """Beam width of the decoder (faster-whisper's default)."""

    max_upload_mb: float = Field(default=200, gt=0)
    """Largest request body accepted, in MiB; larger ones get 413 before they are read."""

    max_audio_minutes: float = Field(default=240, gt=0)
    """Longest media accepted, in minutes, by what its header declares and by what decodes;
    longer media gets 413."""

    decode_threads: int = Field(default=2, ge=1)
    """Threads that decode media, in the Ingress and in the JobQueue; more requests wait their
    turn. Decoding thus leaves the replica's other threads (/v1/ping, readiness) free, and
    decodes no more files at once than this, each holding up to max_audio_minutes of samples
    (0.9 GB at 240). PyAV decodes no faster on two threads than on one (the GIL): a second
    thread keeps a long file from holding up short ones, at some cost in throughput."""

    request_timeout_s: float = Field(default=900, gt=0)
    """Seconds a transcription may take before the request answers 504 and the work stops."""

    api_keys_file: Path | None = None
    """A file of API keys, one a line. With keys set (here or in the environment variable
    WHISPER_SERVE_API_KEYS, comma-separated), every route but /v1/ping, /v1/health and
    /openapi.json needs `Authorization: Bearer <key>`."""

    admin_api_keys_file: Path | None = None
    """A file of admin keys, one a line (or WHISPER_SERVE_ADMIN_KEYS, comma-separated). Once any
    key is configured, ordinary or admin, model management (POST and DELETE /v1/models) and the
    job API need an admin key; an admin key is also accepted wherever an ordinary one is."""

    allow_anonymous: bool = False
    """Serve with no key at all. Without keys and without this, the app refuses to start: a
    service that any client can reach must not be open by accident. config.cpu.yaml sets it for
    a local trial, listening on 127.0.0.1 only."""

    cors_origins: list[str] = []
    """Origins browsers may call the API from (`*` for any); none: no CORS headers. A request
    that changes something (any method but GET, HEAD and OPTIONS) from a web page of another
    origin is refused with 403."""

    upload_idle_timeout_s: float = Field(default=30, gt=0)
    """Seconds an upload may go without sending a byte before it is cut with 408; past this
    long, an upload slower on average than `upload_min_bytes_per_s` is cut too."""

    upload_min_bytes_per_s: int = Field(default=8192, ge=0)
    """The slowest average rate an upload may keep once `upload_idle_timeout_s` has passed,
    so that a client trickling a byte a second cannot hold a slot of the Ingress for hours."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when the replica was given a GPU (`num_gpus` in config.yaml), else CPU."""

    job_media_folders: list[Path] = []
    """Folders the job API may read media from. The job API is off unless this and
    `job_output_folders` both name at least one folder."""

    job_output_folders: list[Path] = []
    """Folders the job API may write outputs into (a job's `output_path` must lie inside one)."""

    job_store_dir: Path = Path("~/.cache/whisper-serve/jobs")
    """Folder of the job queue's SQLite file (jobs.sqlite3) when `job_store_url` is not set:
    a local disk (SQLite's WAL does not work on NFS)."""

    job_store_url: str = Field(default="", validate_default=True)
    """Where the job queue lives. `sqlite:///path/to/jobs.sqlite3` (four slashes before an
    absolute path): a file on a local disk, for a queue on one node; unset, the file in
    `job_store_dir`. `postgresql://user@host:5432/database` (libpq's URL, e.g. with
    `?sslmode=require`; the password best from PGPASSWORD or ~/.pgpass on the nodes rather than
    here): a database that JobQueue replicas on several nodes share; give it a database, or a
    schema (`?options=-csearch_path%3Dname`), of its own."""

    job_lease_s: float = Field(default=60, gt=0)
    """Seconds a JobQueue replica holds a running job without renewing its lease; it renews it
    every third of that while the job runs. A job whose replica died or hung is taken back by
    a replica after this long (another attempt), or FAILS once it has had job_max_attempts."""

    job_retention_days: float = Field(default=30, ge=0)
    """Days a finished job stays readable by id."""

    job_max_attempts: int = Field(default=3, ge=1)
    """Tries of a job whose run was cut short (the service stopped, a replica died) before it FAILS."""

    job_concurrency: int | None = Field(default=None, ge=1)
    """Jobs run at once; None: as many as the Transcriber has running replicas."""

    callback_secret: str | None = None
    """Key of the callbacks' HMAC-SHA256 signature header (X-Whisper-Signature); the
    environment variable WHISPER_SERVE_CALLBACK_SECRET, when set, takes its place."""

    callback_hosts: list[str] | None = None
    """The only hosts job callbacks may go to (names as written in the callback URL, or
    literal addresses), wherever they resolve, private and loopback addresses included.
    None: any host whose addresses are all public (see serve_app/jobs/targets.py)."""

    callback_tries: int = Field(default=5, ge=1)
    """Tries of a callback, the first included, with a doubling wait between them."""

    callback_backoff_s: float = Field(default=1.0, ge=0)
    """Seconds before a callback's second try."""

    realtime_max_sessions: int = Field(default=32, ge=1)
    """Live transcription sessions (WebSocket /v1/realtime) each Ingress replica holds at once;
    one more is told so (`error`) and closed. Their decoding goes through the Transcriber like
    any request, so what they can keep up with grows with its replicas."""

    realtime_max_session_s: float = Field(default=1800, gt=0)
    """Longest a live session may last, in seconds; then an `error` event and a clean close."""

    realtime_idle_timeout_s: float = Field(default=60, gt=0)
    """Seconds a live session may go without a client event before it is closed (with `error`)."""

    realtime_max_buffer_s: float = Field(default=120, gt=0)
    """Most audio a live session holds, in seconds: the uncommitted input buffer and the
    committed utterances waiting for their transcription. Over it: `error`, then the close."""

    realtime_max_utterance_s: float = Field(default=20, gt=1)
    """With server VAD, speech longer than this is committed as an utterance of its own at its
    quietest point, so that no utterance grows without end (and its partial decodes with it)."""

    realtime_partial_interval_s: float = Field(default=0.8, gt=0)
    """Seconds of new audio after which the utterance in progress is decoded again for partial
    results (`...transcription.delta`)."""

    realtime_context_tokens: int = Field(default=40, ge=0, le=100)
    """A live session's completed texts are decoded with its last completed words in Whisper's
    prompt (after the session's own `prompt`), this many tokens of them (40: about 200
    characters): the context that a file's 30 s windows carry, and fewer words misheard.
    Sessions whose contexts are as long share the Transcriber's batches. 0: no such prompt."""

    realtime_send_queue: int = Field(default=256, ge=8)
    """Server events waiting for a live session's client to read them; a client that lets more
    pile up is not reading, and its session is dropped (close code 1008, with the reason)."""

    @field_validator("trusted_model_repos")
    @classmethod
    def _repo_ids(cls, value: list[str]) -> list[str]:
        for repo in value:
            if not _REPO_ID.fullmatch(repo):
                raise ValueError(f"{repo!r} is not a hub repository id: org/name, with no revision")
        return value

    @field_validator("model_dir", "job_store_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("job_store_url", mode="before")
    @classmethod
    def _store_url(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or value == "":
            folder = info.data.get("job_store_dir")
            return "" if folder is None else _SQLITE + quote(str(folder / "jobs.sqlite3"))
        if not isinstance(value, str):
            return value  # the str type refuses it
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme in ("postgresql", "postgres"):
            return value
        if scheme == "sqlite" and value.startswith(_SQLITE) and len(value) > len(_SQLITE):
            # Relative to the directory the config was read in, not to the replica's.
            return _SQLITE + quote(str(Path(unquote(value[len(_SQLITE) :])).expanduser().resolve()))
        raise ValueError(
            f"job_store_url must be sqlite:////absolute/path/jobs.sqlite3 or postgresql://user@host/database, not {scheme or 'a path'}..."
        )

    @field_validator("job_media_folders", "job_output_folders")
    @classmethod
    def _expand_all(cls, value: list[Path]) -> list[Path]:
        return [folder.expanduser().resolve() for folder in value]

    @property
    def jobs_enabled(self) -> bool:
        """Whether the job API is on: both job folder lists name a folder. Off, no JobQueue runs."""
        return bool(self.job_media_folders and self.job_output_folders)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
