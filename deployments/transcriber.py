"""The Transcriber deployment: faster-whisper on this replica's CPUs or GPU, with the models
Serve's model multiplexing holds for it (deployments/multiplexing.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from deployments.metrics import ServeMetrics
from deployments.multiplexing import multiplexed, requested_model
from serve_app.engine.audio import SAMPLE_RATE
from serve_app.engine.budget import thread_budget
from serve_app.engine.whisper import WhisperEngine
from serve_app.errors import ServiceError
from serve_app.memory import forget_shared_pages, release_memory
from serve_app.metrics import DECODING_REQUESTS, TIME_TO_FIRST_SEGMENT, WAITING_CHUNKS
from serve_app.models.catalogue import ModelCatalogue
from serve_app.options import DecodeOptions
from serve_app.settings import AppSettings
from serve_app.transcript import Segment, Transcript, TranscriptInfo

UNHEALTHY_AFTER_FAILURES = 3


class BatchConfig(BaseModel):
    """The Transcriber's `user_config` in config.yaml: applied to running replicas when changed."""

    model_config = ConfigDict(extra="forbid")

    batch_audio_seconds: float = Field(default=120, ge=30)
    """Most audio one batch decodes, in seconds; chunks are at most 30 s, so 120 is 4 chunks (the
    default; config.cpu.yaml sets 60, 2 chunks)."""


def replica_budget() -> tuple[str, int, int]:
    """The device, the engine's workers and their threads, from the resources config.yaml gave
    this replica: the workers' threads add up to its `num_cpus`, so the replicas Ray packs on a
    node never outnumber its cores."""
    assigned = ray.get_runtime_context().get_assigned_resources()
    device = "cuda" if assigned.get("GPU", 0) > 0 else "cpu"
    return device, *thread_budget(device, max(1, int(assigned.get("CPU", 1))))


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=16)
class Transcriber:
    def __init__(self, settings: AppSettings) -> None:
        device, workers, cpu_threads = replica_budget()
        if settings.device != "auto":
            device = settings.device
        self._failures_in_a_row = 0
        self._last_failure = ""
        self.metrics = ServeMetrics()
        self.engine = WhisperEngine(
            device=device,
            compute_type=settings.compute_type,
            cpu_threads=cpu_threads,
            workers=workers,
            beam_size=settings.beam_size,
            batch_audio_seconds=BatchConfig().batch_audio_seconds,
            metrics=self.metrics,
        )
        self.load_model = multiplexed(
            lambda model: self.engine.load(model.path),
            ModelCatalogue(settings.model_dir),
            settings.max_loaded_models,
            metrics=self.metrics,
        )
        self.metrics.keep_recording(
            lambda: [(WAITING_CHUNKS, self.engine.batcher.waiting_chunks), (DECODING_REQUESTS, self.engine.active_streams)]
        )

    def reconfigure(self, config: dict) -> None:
        self.engine.batcher.max_batch_seconds = BatchConfig.model_validate(config).batch_audio_seconds

    async def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """The whole transcript, with the model the request names (its multiplexed model id,
        a `ModelInfo.version`)."""
        async with aclosing(self.stream(audio, options)) as events:
            info = await anext(events)
            assert isinstance(info, TranscriptInfo)
            return Transcript(info=info, segments=[segment async for segment in events])  # type: ignore[misc]

    async def stream(self, audio: np.ndarray, options: DecodeOptions) -> AsyncGenerator[TranscriptInfo | Segment, None]:
        """The TranscriptInfo, then each segment as its chunk decodes, in a batch with the chunks
        of the other requests in flight for the same model and options. The model is the one
        the request names, as `transcribe`. Async, so that Serve cancels it when the caller
        goes away, which drops the chunks not decoding yet. A request decoded to its end is
        counted in the metrics: its audio, its real-time factor, its time to first segment."""
        started = time.monotonic()
        first_segment = True
        try:
            with self._watched():
                whisper = await requested_model(self.load_model)
                async with aclosing(self.engine.astream(audio, whisper, options)) as events:
                    async for event in events:
                        if first_segment and isinstance(event, Segment):
                            first_segment = False
                            self.metrics.record(TIME_TO_FIRST_SEGMENT, time.monotonic() - started)
                        yield event
        finally:
            forget_shared_pages(audio)
            if self.engine.active_streams == 0:
                # In the background: the stream's end is not held up by it.
                asyncio.get_running_loop().run_in_executor(None, release_memory)
        self.metrics.record_work(options.task, len(audio) / SAMPLE_RATE, started)

    @contextmanager
    def _watched(self) -> Iterator[None]:
        """Count the failures that are not the request's fault; check_health reads them."""
        try:
            yield
        except ServiceError:
            raise
        except Exception as error:
            self._failures_in_a_row += 1
            self._last_failure = f"{type(error).__name__}: {error}"
            raise
        self._failures_in_a_row = 0

    def check_health(self) -> None:
        """Serve replaces a replica whose engine keeps failing (a broken model, a GPU fault)."""
        if self._failures_in_a_row >= UNHEALTHY_AFTER_FAILURES:
            raise RuntimeError(f"the engine failed {self._failures_in_a_row} requests in a row; last: {self._last_failure}")

    def describe(self) -> dict:
        """The engine's settings and counters: the batches and chunks decoded are what
        benchmarks/throughput.py reports; the streams open and segments decoded show the tests
        that a client gone stops its decoding. The models the replica holds are Serve's to
        report: the multiplexed model ids each replica pushes to the controller, on which
        requests are routed."""
        engine = self.engine
        return {
            "device": engine.device,
            "compute_type": engine.compute_type,
            "cpu_threads": engine.cpu_threads,
            "workers": engine.workers,
            "batch_audio_seconds": engine.batcher.max_batch_seconds,
            "batches": engine.batcher.batches,
            "chunks_decoded": engine.batcher.chunks,
            "active_streams": engine.active_streams,
            "segments_decoded": engine.segments_decoded,
        }
