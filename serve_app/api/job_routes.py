"""The job API routes of the older "Whisper Api" server: thin handlers over the JobQueue."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from serve_app.api.http import parse_json, require_content_type
from serve_app.api.smi import cluster_smi
from serve_app.errors import Forbidden
from serve_app.jobs.paths import JOBS_OFF

__all__ = ["JobRoutes"]


class JobRoutes:
    def __init__(self, *, job_queue: DeploymentHandle | None) -> None:
        self._job_queue = job_queue

    @property
    def job_queue(self) -> DeploymentHandle:
        if self._job_queue is None:
            raise Forbidden(JOBS_OFF)
        return self._job_queue

    def routes(self) -> list[Route]:
        return [
            Route("/transcription/job", self.submit, methods=["POST"]),
            Route("/transcription/job/{id}", self.get, methods=["GET"]),
            Route("/transcription/job/{id}", self.delete, methods=["DELETE"]),
            Route("/transcription/jobs", self.listing, methods=["GET"]),
            Route("/stats", self.stats, methods=["GET"]),
            Route("/smi", self.smi, methods=["GET"]),
        ]

    async def submit(self, request: Request) -> Response:
        example = 'a job object such as {"path": "/data/a.mp3"}'
        require_content_type(request, ("application/json",), f"send {example} with Content-Type: application/json")
        body = parse_json(await request.body(), example=example)
        return JSONResponse(await self.job_queue.submit.remote(body), status_code=202)

    async def get(self, request: Request) -> Response:
        return JSONResponse(await self.job_queue.get.remote(request.path_params["id"]))

    async def delete(self, request: Request) -> Response:
        await self.job_queue.delete.remote(request.path_params["id"])
        return Response(status_code=204)

    async def listing(self, request: Request) -> Response:
        return JSONResponse(await self.job_queue.listing.remote())

    async def stats(self, request: Request) -> Response:
        return JSONResponse(await self.job_queue.stats.remote())

    async def smi(self, request: Request) -> Response:
        return PlainTextResponse(await cluster_smi())
