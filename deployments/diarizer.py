"""The Diarizer deployment: a pyannote.audio SpeakerDiarization pipeline on this replica's CPUs or
GPU, with the pipelines Serve's model multiplexing holds for it (deployments/multiplexing.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Generator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np
import ray
from ray import serve

from deployments.metrics import ServeMetrics
from deployments.multiplexing import multiplexed, requested_model
from serve_app.diarization.pieces import DiarizedPiece, joined
from serve_app.diarization.speakers import Diarization
from serve_app.engine.audio import SAMPLE_RATE
from serve_app.memory import forget_shared_pages, release_memory
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.options import SpeakerOptions
from serve_app.settings import AppSettings

# Not 19: the importing thread holds the GIL while it runs, and the replica's event loop waits for it.
_IMPORT_NICENESS = 10


def _import_diarization(threads: int) -> ModuleType:
    """torch and pyannote (seconds of CPU), imported on this thread at a lower CPU priority
    (Linux's nice is a thread's): on a small host the replicas starting beside this one, and
    the first transcriptions, go first."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _IMPORT_NICENESS)
    import torch

    from serve_app.diarization import pipeline

    torch.set_num_threads(threads)  # read by every thread torch runs on
    return pipeline


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2)
class Diarizer:
    def __init__(self, settings: AppSettings) -> None:
        # pyannote sends usage telemetry unless told not to, and reads this when imported.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        assigned = ray.get_runtime_context().get_assigned_resources()
        self.device = "cuda" if assigned.get("GPU", 0) > 0 else "cpu"
        threads = max(1, int(assigned.get("CPU", 1)))  # as many torch threads as the replica has cores
        # torch and pyannote load in the Diarizer's replicas only, in the background: the
        # replica takes requests at once, and its first pipeline load waits for them.
        importer = ThreadPoolExecutor(1, thread_name_prefix="import")
        self._diarization = importer.submit(_import_diarization, threads)
        importer.shutdown(wait=False)
        self.trusted_repos = tuple(settings.trusted_model_repos)
        self.metrics = ServeMetrics()
        self.load_model = multiplexed(
            self._load, ModelCatalogue(settings.model_dir), settings.max_loaded_models, metrics=self.metrics
        )

    @property
    def diarization(self) -> ModuleType:
        return self._diarization.result()

    def check_health(self) -> None:
        """Serve replaces a replica whose torch or pyannote failed to import."""
        if self._diarization.done() and self._diarization.exception() is not None:
            raise RuntimeError(f"the Diarizer could not import its libraries: {self._diarization.exception()!r}")

    def _load(self, model: ModelInfo):
        return self.diarization.load_pipeline(
            model.path, device=self.device, source=model.source, trusted_repos=self.trusted_repos
        )

    async def diarize(self, audio: np.ndarray, options: SpeakerOptions) -> Diarization:
        """Who spoke when, by the pipeline the request names (its multiplexed model id, a
        `ModelInfo.version`), the speakers whose voice matches a known speaker's named after it."""
        return joined([piece async for piece in self.diarize_pieces(audio, options)])

    async def diarize_pieces(self, audio: np.ndarray, options: SpeakerOptions) -> AsyncIterator[DiarizedPiece]:
        """As `diarize`, a piece at a time as each is done: a long file's (pieces.py), or the
        whole of a shorter one."""
        started = time.monotonic()
        pipeline = await requested_model(self.load_model)
        pieces = self._pieces(pipeline, audio, options)
        try:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield piece
        finally:
            with contextlib.suppress(ValueError):  # still running on its thread: the caller is gone
                pieces.close()
            forget_shared_pages(audio)
            await asyncio.to_thread(release_memory)
        self.metrics.record_work("diarize", len(audio) / SAMPLE_RATE, started)

    def _pieces(self, pipeline, audio: np.ndarray, options: SpeakerOptions) -> Generator[DiarizedPiece, None, None]:
        """The request's pieces (a generator: the references are embedded on the thread that runs it)."""
        diarization = self.diarization
        yield from diarization.diarized_pieces(
            pipeline,
            audio,
            num_speakers=options.num_speakers,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
            references={known.name: diarization.embed(pipeline, known.audio) for known in options.known_speakers},
        )
