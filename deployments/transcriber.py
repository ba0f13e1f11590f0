"""The Transcriber deployment: faster-whisper on this replica's CPUs or GPU."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import numpy as np
import ray
from ray import serve

from serve_app.catalogue import ModelInfo
from serve_app.engine import WhisperEngine
from serve_app.errors import ServiceError
from serve_app.options import DecodeOptions
from serve_app.settings import AppSettings
from serve_app.threads import iterate_in_thread
from serve_app.transcript import Segment, Transcript, TranscriptInfo


UNHEALTHY_AFTER_FAILURES = 3


def replica_resources() -> tuple[str, int]:
    """The device and the CPU thread count this replica was given by config.yaml.

    `cpu_threads` is the replica's `num_cpus`, so the replicas Ray packs on a node use
    exactly its cores between them.
    """
    assigned = ray.get_runtime_context().get_assigned_resources()
    device = "cuda" if assigned.get("GPU", 0) > 0 else "cpu"
    return device, max(1, int(assigned.get("CPU", 1)))


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2)
class Transcriber:
    def __init__(self, settings: AppSettings) -> None:
        device, cpu_threads = replica_resources()
        if settings.device != "auto":
            device = settings.device
        self._failures_in_a_row = 0
        self._last_failure = ""
        self.engine = WhisperEngine(
            device=device,
            compute_type=settings.compute_type,
            cpu_threads=cpu_threads,
            max_loaded=settings.max_loaded_models,
            beam_size=settings.beam_size,
            vad_filter=settings.vad_filter,
        )

    def transcribe(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> Transcript:
        with self._watched():
            return self.engine.transcribe(audio, model, options)

    async def stream(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> AsyncIterator[TranscriptInfo | Segment]:
        # Async, so that Serve cancels it when the caller goes away, which stops the decoding.
        with self._watched():
            async for event in iterate_in_thread(self.engine.stream(audio, model, options)):
                yield event

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
        engine = self.engine
        return {
            "device": engine.device,
            "compute_type": engine.compute_type,
            "cpu_threads": engine.cpu_threads,
            "loaded": engine.loaded(),
            "active_streams": engine.active_streams,
            "segments_decoded": engine.segments_decoded,
        }
