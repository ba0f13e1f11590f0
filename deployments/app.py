"""The application graph: `build_app` is config.yaml's `import_path` (`deployments.app:build_app`)."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

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


def build_app(args: dict[str, Any] | AppSettings | None = None) -> Application:
    """Validate the app's `args` (see AppSettings), then bind the graph.

    Ingress ─┬─► ModelStore   (one replica: the models on disk, and downloads)
             ├─► Transcriber  (faster-whisper; replicas and resources from config.yaml)
             ├─► Diarizer     (pyannote.audio; its own replicas and resources)
             └─► JobQueue     (one replica: the durable job queue; it calls ModelStore and Transcriber)
    """
    settings = args if isinstance(args, AppSettings) else AppSettings.model_validate(args or {})
    check_keys(settings)
    model_store = ModelStore.bind(settings)
    transcriber = Transcriber.bind(settings)
    diarizer = Diarizer.bind(settings)
    job_queue = JobQueue.bind(settings, model_store=model_store, transcriber=transcriber)
    return Ingress.bind(settings, model_store=model_store, transcriber=transcriber, diarizer=diarizer, job_queue=job_queue)
