"""The Diarizer deployment: a pyannote.audio SpeakerDiarization pipeline on this replica's CPUs or
GPU, with the pipelines Serve's model multiplexing holds for it (deployments/multiplexing.py)."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import ray
from ray import serve

from deployments.metrics import ServeMetrics
from deployments.multiplexing import multiplexed, requested_model
from serve_app.diarization.speakers import Diarization
from serve_app.engine.audio import SAMPLE_RATE
from serve_app.metrics import AUDIO_SECONDS, REAL_TIME_FACTOR
from serve_app.memory import forget_shared_pages, keep_heap_small, release_memory
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.options import SpeakerOptions
from serve_app.settings import AppSettings


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2)
class Diarizer:
    def __init__(self, settings: AppSettings) -> None:
        # pyannote sends usage telemetry unless told not to, and reads this when imported.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        keep_heap_small()
        # torch and pyannote load here, in the Diarizer's replicas only, not in every process
        # that imports the application graph.
        import torch

        from serve_app.diarization import pipeline as diarization

        self.diarization = diarization
        assigned = ray.get_runtime_context().get_assigned_resources()
        self.device = "cuda" if assigned.get("GPU", 0) > 0 else "cpu"
        torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))  # as many threads as the replica has cores
        self.trusted_repos = tuple(settings.trusted_model_repos)
        self.metrics = ServeMetrics()
        self.load_model = multiplexed(
            self._load, ModelCatalogue(settings.model_dir), settings.max_loaded_models, metrics=self.metrics
        )

    def _load(self, model: ModelInfo):
        return self.diarization.load_pipeline(
            model.path, device=self.device, source=model.source, trusted_repos=self.trusted_repos
        )

    async def diarize(self, audio: np.ndarray, options: SpeakerOptions) -> Diarization:
        """Who spoke when, by the pipeline the request names (its multiplexed model id, a
        `ModelInfo.version`), the speakers whose voice matches a known speaker's named after it."""
        started = time.monotonic()
        pipeline = await requested_model(self.load_model)
        try:
            found = await asyncio.to_thread(self._diarize, pipeline, audio, options)
        finally:
            forget_shared_pages(audio)
            await asyncio.to_thread(release_memory)
        seconds = len(audio) / SAMPLE_RATE
        self.metrics.record(AUDIO_SECONDS, seconds, {"task": "diarize"})
        if seconds > 0:
            self.metrics.record(REAL_TIME_FACTOR, (time.monotonic() - started) / seconds, {"task": "diarize"})
        return found

    def _diarize(self, pipeline, audio: np.ndarray, options: SpeakerOptions) -> Diarization:
        from serve_app.diarization.known import match_known_speakers

        found = self.diarization.diarization(
            pipeline,
            audio,
            num_speakers=options.num_speakers,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
        )
        if not options.known_speakers or not found.embeddings:
            return found
        references = {known.name: self.diarization.embed(pipeline, known.audio) for known in options.known_speakers}
        return found.renamed(match_known_speakers(found.embeddings, references))
