"""Every metric the service exports, declared once, and the one call that records them.

The library records through a `Recorder` (`recorder.record(METRIC, value, tags)`): it never
imports Ray for it, and records nothing unless given one (`NO_METRICS`, the default). The
deployments give theirs a recorder on `ray.serve.metrics` (deployments/metrics.py), which
Ray exports to Prometheus on each node's metrics endpoint, each name with Ray's `ray_` prefix,
counters with `_total` added, histograms as `_bucket`, `_sum` and `_count`, and every series
tagged with its `application`, `deployment` and `replica`. `exported_names` lists the names as
Prometheus sees them: the Grafana dashboard (deploy/grafana/whisper-serve.json) queries those
only, and its test checks that against this module.

Records are made per request, batch, job or download, never per sample or segment. Tag values
are few by construction: a route's template (`/transcription/job/{id}`, never the raw path),
a status code, a task, a kind, an outcome.

Two ways of Ray 2.60's export shape what is declared here. A histogram's `_sum` is made up from
the midpoints of its buckets, so it is not exact: a mean that must be (a batch's fill) is two
counters instead. And a gauge not recorded again for two export intervals (about 20 s) is
dropped from the endpoint, so gauges are recorded every GAUGE_EVERY_S, whether they changed
or not, rather than when they change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "GAUGE_EVERY_S",
    "METRICS",
    "NO_METRICS",
    "PROMETHEUS_PREFIX",
    "SERVE_METRICS",
    "Metric",
    "Recorder",
    "exported_names",
]

PROMETHEUS_PREFIX = "ray_"
"""What Ray puts before the name of every metric it exports."""

GAUGE_EVERY_S = 5.0
"""How often gauges are recorded: well within the two export intervals Ray keeps a gauge for."""


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric as Ray declares it: a counter adds `value`, a gauge is set to it, a histogram
    counts it into the bucket its `boundaries` (upper bounds, ascending) give."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def exported(self) -> tuple[str, ...]:
        """The names of its series on Ray's Prometheus endpoint."""
        name = PROMETHEUS_PREFIX + self.name
        if self.kind == "counter":
            return (f"{name}_total",)
        if self.kind == "histogram":
            return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
        return (name,)


# The HTTP edge (the Ingress).

HTTP_REQUESTS = Metric(
    "whisper_http_requests",
    "counter",
    "HTTP requests answered by the app, by route template, method and status code (499: the client went away "
    "before an answer; 101: a WebSocket session opened)",
    tags=("route", "method", "status"),
)

# The Transcriber and the Diarizer.

AUDIO_SECONDS = Metric(
    "whisper_audio_seconds",
    "counter",
    "Seconds of audio a replica has transcribed, translated or diarized to the end, by task",
    tags=("task",),
)
REAL_TIME_FACTOR = Metric(
    "whisper_real_time_factor",
    "histogram",
    "A request's time on the replica divided by its audio's length, by task (below 1: faster than real time)",
    tags=("task",),
    boundaries=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
TIME_TO_FIRST_SEGMENT = Metric(
    "whisper_time_to_first_segment_seconds",
    "histogram",
    "Seconds from a request reaching a Transcriber replica to its first decoded segment (model load and language "
    "detection included)",
    boundaries=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
BATCHES = Metric(
    "whisper_batches",
    "counter",
    "Batches a Transcriber replica decoded",
)
BATCHED_CHUNKS = Metric(
    "whisper_batched_chunks",
    "counter",
    "Chunks (of at most 30 s of audio) a Transcriber replica decoded in its batches: over whisper_batches, the batch fill",
)
BATCHED_AUDIO_SECONDS = Metric(
    "whisper_batched_audio_seconds",
    "counter",
    "Seconds of audio (speech, silences cut) a Transcriber replica decoded in its batches: over whisper_batches, the "
    "seconds a batch (at most batch_audio_seconds)",
)
WAITING_CHUNKS = Metric(
    "whisper_batcher_waiting_chunks",
    "gauge",
    "Chunks cut and waiting for a free worker of a Transcriber replica",
)
DECODING_REQUESTS = Metric(
    "whisper_decoding_requests",
    "gauge",
    "Requests whose chunks a Transcriber replica is decoding now",
)

# Models.

MODEL_LOADS = Metric(
    "whisper_model_loads",
    "counter",
    "Models a Transcriber or Diarizer replica loaded into memory, by kind (transcription, diarization) and outcome "
    "(loaded, failed)",
    tags=("kind", "outcome"),
)
MODEL_LOAD_SECONDS = Metric(
    "whisper_model_load_seconds",
    "histogram",
    "Seconds a replica took to load a model, by kind",
    tags=("kind",),
    boundaries=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0),
)
MODEL_DOWNLOADS = Metric(
    "whisper_model_downloads",
    "counter",
    "Model downloads from the hub into the model folder, by outcome (downloaded, failed)",
    tags=("outcome",),
)

# The job API (the JobQueue).

JOBS_QUEUED = Metric(
    "whisper_jobs_queued",
    "gauge",
    "Jobs waiting in the job store (on PostgreSQL every JobQueue replica sees the same store: take the max)",
)
JOBS_RUNNING = Metric(
    "whisper_jobs_running",
    "gauge",
    "Jobs running, by the job store (on PostgreSQL every JobQueue replica sees the same store: take the max)",
)
OLDEST_QUEUED_JOB_AGE = Metric(
    "whisper_oldest_queued_job_age_seconds",
    "gauge",
    "Seconds since the oldest job still waiting was submitted; 0 when none waits",
)
JOBS_FINISHED = Metric(
    "whisper_jobs_finished",
    "counter",
    "Job runs that ended, by how (COMPLETED, FAILED, or QUEUED again when a replica died under it)",
    tags=("status",),
)
CALLBACKS = Metric(
    "whisper_callbacks",
    "counter",
    "Tries of job callbacks, by outcome: delivered; retrying (a failed try, another will come); undelivered (the "
    "last try failed, or the receiver refused)",
    tags=("outcome",),
)

METRICS: tuple[Metric, ...] = (
    HTTP_REQUESTS,
    AUDIO_SECONDS,
    REAL_TIME_FACTOR,
    TIME_TO_FIRST_SEGMENT,
    BATCHES,
    BATCHED_CHUNKS,
    BATCHED_AUDIO_SECONDS,
    WAITING_CHUNKS,
    DECODING_REQUESTS,
    MODEL_LOADS,
    MODEL_LOAD_SECONDS,
    MODEL_DOWNLOADS,
    JOBS_QUEUED,
    JOBS_RUNNING,
    OLDEST_QUEUED_JOB_AGE,
    JOBS_FINISHED,
    CALLBACKS,
)

SERVE_METRICS: Mapping[str, str] = {
    "ray_serve_deployment_queued_queries": "requests waiting in a handle for a replica of a deployment (the queue "
    "max_queued_requests bounds; past it, 503)",
    "ray_serve_replica_processing_queries": "requests a replica is working on now",
    "ray_serve_num_http_requests_total": "HTTP requests Serve's proxy answered, by status_code: those it refused before "
    "the app (503 when the Ingress's own queue is full) included",
}
"""Metrics of Ray Serve's own that the dashboard draws beside ours (Serve exports them)."""


def exported_names() -> frozenset[str]:
    """Every metric name the service's Prometheus endpoint carries that the dashboard may query."""
    return frozenset(name for metric in METRICS for name in metric.exported) | frozenset(SERVE_METRICS)


class Recorder(Protocol):
    def record(self, metric: Metric, value: float = 1.0, tags: Mapping[str, str] | None = None) -> None:
        """Add `value` to a counter, set a gauge to it, or observe it in a histogram; `tags`
        gives a value to each of the metric's tags."""
        ...


class _NoMetrics:
    def record(self, metric: Metric, value: float = 1.0, tags: Mapping[str, str] | None = None) -> None:
        return None


NO_METRICS: Recorder = _NoMetrics()
"""Records nothing: the library's default, for tests, benchmarks and the batch CLI."""
