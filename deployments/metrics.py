"""The metrics of serve_app/metrics.py on Ray Serve's `ray.serve.metrics`: each replica records
its own, tagged with its application, deployment and replica, and Ray exports them on the
node's Prometheus endpoint."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from ray.serve import metrics as serve_metrics

from serve_app.metrics import AUDIO_SECONDS, GAUGE_EVERY_S, REAL_TIME_FACTOR, Metric

__all__ = ["ServeMetrics"]

logger = logging.getLogger(__name__)


class ServeMetrics:
    """A serve_app.metrics.Recorder for a replica: each metric is declared to Ray the first
    time the replica records it, so a replica exports only the metrics it records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # batcher workers, job and download threads record too
        self._instruments: dict[str, Any] = {}
        self._failed: set[str] = set()

    def _instrument(self, metric: Metric) -> Any:
        with self._lock:
            instrument = self._instruments.get(metric.name)
            if instrument is None:
                tags = cast("tuple[str]", metric.tags)  # Ray annotates any tuple of tag keys as a 1-tuple
                if metric.kind == "counter":
                    instrument = serve_metrics.Counter(metric.name, description=metric.description, tag_keys=tags)
                elif metric.kind == "gauge":
                    instrument = serve_metrics.Gauge(metric.name, description=metric.description, tag_keys=tags)
                else:
                    instrument = serve_metrics.Histogram(
                        metric.name, description=metric.description, boundaries=list(metric.boundaries), tag_keys=tags
                    )
                self._instruments[metric.name] = instrument
            return instrument

    def record(self, metric: Metric, value: float = 1.0, tags: Mapping[str, str] | None = None) -> None:
        """Never raises: a metric that cannot be recorded must not fail the request, batch or
        job that records it (the first failure of each metric is logged)."""
        try:
            instrument = self._instrument(metric)
            values = dict(tags or {})
            if metric.kind == "counter":
                instrument.inc(value, tags=values)
            elif metric.kind == "gauge":
                instrument.set(value, tags=values)
            else:
                instrument.observe(value, tags=values)
        except Exception:
            if metric.name not in self._failed:
                self._failed.add(metric.name)
                logger.exception("metric %s could not be recorded", metric.name)

    def record_work(self, task: str, audio_seconds: float, started: float) -> None:
        """A request's audio, and its real-time factor: the time since `started` (monotonic) over it."""
        self.record(AUDIO_SECONDS, audio_seconds, {"task": task})
        if audio_seconds > 0:
            self.record(REAL_TIME_FACTOR, (time.monotonic() - started) / audio_seconds, {"task": task})

    def keep_recording(self, gauges: Callable[[], Iterable[tuple[Metric, float]]], *, every_s: float = GAUGE_EVERY_S) -> None:
        """Record the gauges `gauges` reads now, and again every `every_s` seconds while the
        replica lives (in a thread of its own): Ray drops a gauge that is not recorded again."""

        def record_forever() -> None:
            while True:
                try:
                    for metric, value in gauges():
                        self.record(metric, value)
                except Exception:
                    logger.exception("the gauges could not be read")
                time.sleep(every_s)

        threading.Thread(target=record_forever, name="gauges", daemon=True).start()
