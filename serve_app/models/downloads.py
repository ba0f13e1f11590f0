"""Model downloads into the catalogue: one transfer per model however many ask, watchable while it runs.

`DownloadManager.ensure(path)` is what `POST /v1/models` needs: a `Download` that is either already
finished with the model the catalogue has (`created` False: 200), or the one download of that model
in flight, started now if need be (`created` True: 201). Callers poll it rather than block on it:
`snapshot()` is a cheap copy of the latest progress, `wait(timeout)` blocks a thread, so an async
caller runs it with `asyncio.to_thread` (or awaits `asyncio.wrap_future(download.future)`).

No Ray here: the ModelStore deployment holds one manager; tests drive it directly.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from functools import partial
from typing import Any

from serve_app.errors import ServiceError
from serve_app.metrics import MODEL_DOWNLOADS, NO_METRICS, Recorder
from serve_app.models import hub
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.models.hub import HubSource

__all__ = ["Download", "DownloadManager"]

logger = logging.getLogger("ray.serve")


class Download:
    """One model's download, shared by every caller who asked for that model while it ran."""

    def __init__(self, source: HubSource, *, created: bool) -> None:
        self.source = source
        self.created = created
        """False when the model was already in the catalogue; True when it is downloaded now."""
        self.future: futures.Future[ModelInfo] = futures.Future()
        """Resolves to the ModelInfo, or raises the ServiceError that says why not."""
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {"status": f"looking up {source.repo_id}"}

    @classmethod
    def present(cls, source: HubSource, model: ModelInfo) -> Download:
        """A download with nothing to do: the catalogue already had the model."""
        download = cls(source, created=False)
        download._progress = {"status": "present"}
        download.future.set_result(model)
        return download

    @property
    def model_id(self) -> str:
        return self.source.model_id

    def snapshot(self) -> dict[str, Any]:
        """The latest progress (`status`, and `total` and `completed` in bytes once known); cheap
        enough to call from an event loop."""
        with self._lock:
            return dict(self._progress)

    def done(self) -> bool:
        return self.future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds for the end; True when it has ended, either way."""
        futures.wait([self.future], timeout=timeout)
        return self.future.done()

    def result(self, timeout: float | None = None) -> ModelInfo:
        """The model, once stored; raises the download's ServiceError, or TimeoutError."""
        return self.future.result(timeout=timeout)

    def _report(self, progress: dict[str, Any]) -> None:
        with self._lock:
            self._progress = dict(progress)


class DownloadManager:
    """Starts at most one download per model id and keeps the ones in flight, thread-safely.

    `endpoint` and `token` override HF_ENDPOINT and HF_TOKEN (None: those, as huggingface_hub
    reads them). Each download that ends, downloaded or failed, goes to `metrics`.
    """

    def __init__(
        self,
        catalogue: ModelCatalogue,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        metrics: Recorder = NO_METRICS,
    ) -> None:
        self.catalogue = catalogue
        self.endpoint = endpoint
        self.token = token
        self.metrics = metrics
        self._lock = threading.Lock()
        self._running: dict[str, Download] = {}

    def ensure(self, path: str) -> Download:
        """The model `path` names: present already, or being downloaded (by this call or an earlier one).

        Raises BadRequest at once for a path `hub.resolve` refuses; every other failure (not found,
        gated, hub unreachable, transfer broken) comes from the Download's `result()`.
        """
        source = hub.resolve(path)
        with self._lock:
            model = self.find(source)
            if model is not None:
                return Download.present(source, model)
            running = self._running.get(source.model_id)
            if running is not None:
                return running
            download = Download(source, created=True)
            self._running[source.model_id] = download
        threading.Thread(target=self._run, args=(download,), name=f"download-{source.model_id}", daemon=True).start()
        return download

    def find(self, source: HubSource) -> ModelInfo | None:
        """A model in the catalogue that answers to the source's id or one of its aliases (each
        of which means these very files), so `Systran/faster-whisper-base` finds `base`."""
        for name in source.names:
            model = self.catalogue.find(name)
            if model is not None:
                return model
        return None

    def active(self) -> list[Download]:
        """The downloads in flight (for a delete that must not pull a model from under one)."""
        with self._lock:
            return list(self._running.values())

    def _run(self, download: Download) -> None:
        source = download.source
        try:
            listing = hub.inspect(source, endpoint=self.endpoint, token=self.token)
            write = partial(hub.download, listing, progress=download._report, endpoint=self.endpoint, token=self.token)
            outcome: ModelInfo | ServiceError = self.catalogue.add(
                source.model_id, write, kind=listing.kind, source=source.label, aliases=source.aliases
            )
        except ServiceError as error:
            outcome = error
        except Exception as error:  # our bug: the caller still gets a reason, the log the traceback
            logger.exception("downloading %s failed", source.path)
            outcome = ServiceError(f"downloading {source.path} failed: {error}")
        finally:
            # Out of the table before the result is out: a caller who comes after the result
            # finds the model in the catalogue, or (after a failure) starts a fresh attempt.
            with self._lock:
                self._running.pop(source.model_id, None)
        if isinstance(outcome, ServiceError):
            self.metrics.record(MODEL_DOWNLOADS, 1, {"outcome": "failed"})
            download.future.set_exception(outcome)
        else:
            self.metrics.record(MODEL_DOWNLOADS, 1, {"outcome": "downloaded"})
            download.future.set_result(outcome)
