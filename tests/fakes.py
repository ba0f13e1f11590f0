"""The HTTP app in-process, without Ray: the real routes and edge over stand-ins for the
deployment handles, reached through httpx's ASGITransport."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from deployments.model_store import ModelStore
from serve_app.api.app import all_routes, http_app
from serve_app.errors import NotFound
from serve_app.metrics import Metric
from serve_app.models.catalogue import ModelInfo
from serve_app.pipeline import Pipeline
from serve_app.settings import AppSettings


class FakeHandle:
    """`handle.method.remote(...)` awaited as a deployment handle's call is: on a plain object."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        class Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> Any:
                async def call() -> Any:
                    result = method(*args, **kwargs)
                    return await result if inspect.isawaitable(result) else result

                return call()

        return Method()


class Ready:
    async def require(self, deployments: tuple[str, ...]) -> None:
        return None


def add_model_folder(store: Any, model_id: str) -> ModelInfo:
    """A model folder as an operator would copy one in (its weights are not read here)."""

    def write(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"\0" * 16)
        (folder / "config.json").write_text("{}")

    return store.catalogue.add(model_id, write)


class Jobs:
    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def submit(self, body: Any) -> dict[str, Any]:
        self.submitted.append(body)
        return {"id": "job-1", "status": "QUEUED"}

    def stats(self) -> dict[str, int]:
        return {"Queued": len(self.submitted), "Running": 0, "Processed": 0}

    def get(self, job_id: str) -> dict[str, Any]:
        raise NotFound(f"no job {job_id}")


class RecordedMetrics:
    """A serve_app.metrics.Recorder that keeps what it is given, for the fast lane (the slow
    lane scrapes the real thing: tests/test_metrics_service.py)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float, dict[str, str]]] = []
        self._lock = threading.Lock()

    def record(self, metric: Metric, value: float = 1.0, tags: Mapping[str, str] | None = None) -> None:
        assert set(tags or {}) == set(metric.tags), f"{metric.name} is tagged {metric.tags}, not {sorted(tags or {})}"
        with self._lock:
            self.records.append((metric.name, value, dict(tags or {})))

    def values(self, metric: Metric) -> list[float]:
        with self._lock:
            return [value for name, value, _ in self.records if name == metric.name]

    def tagged(self, metric: Metric) -> list[dict[str, str]]:
        with self._lock:
            return [tags for name, _, tags in self.records if name == metric.name]


class InProcess:
    """The app as a client sees it, with its model folder, its job queue and its metrics to look into."""

    def __init__(self, tmp_path: Path, *, job_queue: bool = True, **args: Any) -> None:
        """`job_queue=False`: no JobQueue, as when the job API is off (deployments/app.py)."""
        self.settings = AppSettings.model_validate(
            {"model_dir": str(tmp_path / "models"), "allow_anonymous": True, "embedded_models": False} | args
        )
        self.models = ModelStore.func_or_class(self.settings)  # the deployment's own class, not deployed
        add_model_folder(self.models, "tiny.en")
        self.jobs = Jobs()
        pipeline = Pipeline.from_settings(self.settings, model_store=FakeHandle(self.models), transcriber=None)
        routes = all_routes(pipeline=pipeline, readiness=Ready(), job_queue=FakeHandle(self.jobs) if job_queue else None)
        self.metrics = RecordedMetrics()
        self.app = http_app(self.settings, routes, metrics=self.metrics)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://whisper.test", **kwargs)


def as_user(key: str) -> dict[str, str]:
    """The header a client sends its API key in."""
    return {"Authorization": f"Bearer {key}"}
