"""The ModelStore deployment: one replica that owns the model folder, what is in it and what
is being downloaded into it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.metrics import ServeMetrics
from serve_app.errors import Conflict, NotFound
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.models.downloads import DownloadManager
from serve_app.models.embedded import EMBEDDED_MODELS
from serve_app.models.ids import WHISPER_1
from serve_app.settings import AppSettings

PROGRESS_SECONDS = 1.0


@serve.deployment(ray_actor_options={"num_cpus": 0}, num_replicas=1)
class ModelStore:
    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.catalogue = ModelCatalogue(settings.model_dir)
        self.catalogue.clean_partials()
        if settings.embedded_models:
            self.catalogue.seed(
                EMBEDDED_MODELS,
                required=(settings.default_model, settings.openai_model_alias, settings.diarization_model),
            )
        self.downloads = DownloadManager(self.catalogue, metrics=ServeMetrics())
        self.leases: dict[str, tuple[str, float]] = {}
        """lease id: (model id, when it lapses on the monotonic clock)"""

    def list(self) -> list[ModelInfo]:
        return self.catalogue.models()

    def get(self, name: str) -> ModelInfo | None:
        if name == WHISPER_1:
            name = self.settings.openai_model_alias
        return self.catalogue.find(name)

    def checkout(self, name: str, lease_s: float) -> tuple[ModelInfo | None, str]:
        """The model `name` finds, leased for at most `lease_s` seconds: it cannot be deleted
        until the lease is released (or lapses, if its holder died)."""
        model = self.get(name)
        lease = uuid.uuid4().hex
        if model is not None:
            self.leases[lease] = (model.id, time.monotonic() + lease_s)
        return model, lease

    def release(self, lease: str) -> None:
        self.leases.pop(lease, None)

    def _in_use(self, model_id: str) -> int:
        now = time.monotonic()
        self.leases = {lease: held for lease, held in self.leases.items() if held[1] > now}
        return sum(1 for held_id, _ in self.leases.values() if held_id == model_id)

    async def add(self, path: str) -> tuple[ModelInfo, bool]:
        """The model `path` names, downloaded now unless present, and whether it was downloaded."""
        download = self.downloads.ensure(path)
        return await asyncio.wrap_future(download.future), download.created

    async def add_streaming(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """As `add`, as a stream: `{"progress": {...}}` at most once a second while bytes arrive,
        then `{"model": ModelInfo, "created": bool}`; a failure raises after the progress."""
        download = self.downloads.ensure(path)
        finished = asyncio.wrap_future(download.future)
        last = None
        while not finished.done():
            progress = download.snapshot()
            if progress != last and "completed" in progress:
                yield {"progress": progress}
                last = progress
            await asyncio.wait([finished], timeout=PROGRESS_SECONDS)
        yield {"model": finished.result(), "created": download.created}

    def delete(self, name: str) -> ModelInfo:
        """Remove a model from the folder. No replica that loaded it uses it again: requests name
        a model by its version, which a model downloaded again under the same id does not share
        (deployments/multiplexing.py). Its weights go when they are a replica's least recently
        used; a request still transcribing with them finishes with them."""
        model = self.catalogue.find(name)
        if model is None:
            raise NotFound("model not found")
        for setting in ("default_model", "openai_model_alias", "diarization_model"):
            if model.answers_to(getattr(self.settings, setting)):
                raise Conflict(
                    f"model {model.id} is the configured {setting}; set another {setting} in the app's args before deleting it"
                )
        if any(download.model_id == model.id for download in self.downloads.active()):
            raise Conflict(f"model {model.id} is being downloaded; delete it once the download has ended")
        if users := self._in_use(model.id):
            raise Conflict(f"model {model.id} is in use by {users} request(s) or job(s); delete it once they have ended")
        self.catalogue.remove(model.id)
        return model
