"""The Ingress deployment: holds the handles of the other deployments and serves the HTTP API."""

from __future__ import annotations

import io

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import FormData, UploadFile
from starlette.types import ASGIApp

from deployments.metrics import ServeMetrics
from serve_app.api.app import all_routes, http_app
from serve_app.api.audio_routes import NEEDS
from serve_app.api.options import parse_request_options
from serve_app.api.readiness import Readiness
from serve_app.errors import BadRequest
from serve_app.formats import render
from serve_app.options import SpeechTask
from serve_app.pipeline import Pipeline, put_audio
from serve_app.settings import AppSettings

__all__ = ["Ingress"]


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    def __init__(
        self,
        settings: AppSettings,
        *,
        model_store: DeploymentHandle,
        transcriber: DeploymentHandle,
        diarizer: DeploymentHandle,
        job_queue: DeploymentHandle | None,
    ) -> None:
        self.settings = settings
        self.pipeline = Pipeline.from_settings(
            settings, model_store=model_store, transcriber=transcriber, diarizer=diarizer, share_audio=put_audio
        )
        self.job_queue = job_queue
        app_name = serve.get_replica_context().app_name
        self.readiness = Readiness(app_name)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return http_app(
            self.settings,
            all_routes(pipeline=self.pipeline, readiness=self.readiness, job_queue=self.job_queue, settings=self.settings),
            metrics=ServeMetrics(),
        )

    async def transcribe(self, media: bytes, fields: dict[str, str], task: SpeechTask = "transcribe") -> dict | str:
        """`POST /v1/audio/transcriptions` (or translations) without HTTP, for Ray drivers on the
        cluster (serve_app.client.WhisperClient): the form's fields and the file's bytes go
        through the route's own parsing, pipeline and renderer, so the body is the one HTTP
        sends, a dict for the JSON formats and text for the others. A refusal raises the
        ServiceError the route answers with. The whole body comes back at once: no stream."""
        if task not in ("transcribe", "translate"):  # a Ray caller's task is not type-checked
            raise BadRequest(f"task must be transcribe or translate, not {task!r}")
        await self.readiness.require(NEEDS[task])
        upload = UploadFile(io.BytesIO(media), filename="media")
        options = parse_request_options(FormData([*fields.items(), ("file", upload)]), task=task)
        prepared = await self.pipeline.prepare(upload.file, options.model, options.decode)
        transcript = await self.pipeline.transcribe(prepared, options.decode)
        return render(transcript, options.response_format, words=options.decode.word_timestamps)
