"""The application graph: `build_app` is config.yaml's `import_path` (`deployments.app:build_app`)."""

from __future__ import annotations

from typing import Any, cast

from ray.serve import Application, Deployment

from deployments.diarizer import Diarizer
from deployments.ingress import Ingress
from deployments.job_queue import JobQueue
from deployments.model_store import ModelStore
from deployments.transcriber import Transcriber
from serve_app.api.auth import ADMIN_KEYS_ENV, API_KEYS_ENV, load_keys
from serve_app.settings import AppSettings

__all__ = ["build_app", "check_keys"]


def check_keys(settings: AppSettings) -> None:
    """Refuse to start a service that anyone who reaches it could use, unless told to."""
    if settings.allow_anonymous or load_keys(settings.api_keys_file, settings.admin_api_keys_file).configured:
        return
    raise ValueError(
        f"no API key is configured: set api_keys_file and admin_api_keys_file in the app's args (or {API_KEYS_ENV} and "
        f"{ADMIN_KEYS_ENV} in the environment of the process that starts Ray), or set allow_anonymous: true to serve "
        "without keys where only trusted clients can reach the service"
    )


def _deployment(decorated: type) -> Deployment:
    """What @serve.deployment made of the class: mypy types a decorated class as the class
    itself, not as what its decorator returns, and so finds no `bind` on it."""
    return cast(Deployment, decorated)


def build_app(args: dict[str, Any] | AppSettings | None = None) -> Application:
    """Validate the app's `args` (see AppSettings), then bind the graph.

    Ingress ─┬─► ModelStore   (one replica: the models on disk, and downloads)
             ├─► Transcriber  (faster-whisper; replicas and resources from config.yaml)
             ├─► Diarizer     (pyannote.audio; its own replicas and resources)
             └─► JobQueue     (one replica: the durable job queue; it calls ModelStore and Transcriber)

    The JobQueue is bound only with the job API on (`jobs_enabled`): off, the job routes answer
    403 themselves, and no replica sits idle for them.
    """
    settings = args if isinstance(args, AppSettings) else AppSettings.model_validate(args or {})
    check_keys(settings)
    model_store = _deployment(ModelStore).bind(settings)
    transcriber = _deployment(Transcriber).bind(settings)
    diarizer = _deployment(Diarizer).bind(settings)
    job_queue = (
        _deployment(JobQueue).bind(settings, model_store=model_store, transcriber=transcriber) if settings.jobs_enabled else None
    )
    return _deployment(Ingress).bind(
        settings, model_store=model_store, transcriber=transcriber, diarizer=diarizer, job_queue=job_queue
    )
