"""The Diarizer deployment: a pyannote.audio SpeakerDiarization pipeline on this replica's CPUs or GPU."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
import ray
from ray import serve

from serve_app.diarization.speakers import SpeakerTurn
from serve_app.models.catalogue import ModelInfo
from serve_app.options import SpeakerOptions
from serve_app.settings import AppSettings


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2)
class Diarizer:
    def __init__(self, settings: AppSettings) -> None:
        # pyannote sends usage telemetry unless told not to, and reads this when imported.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        # torch and pyannote load here, in the Diarizer's replicas only, not in every process
        # that imports the application graph.
        import torch

        from serve_app.diarization import pipeline as diarization

        self.diarization = diarization
        assigned = ray.get_runtime_context().get_assigned_resources()
        self.device = "cuda" if assigned.get("GPU", 0) > 0 else "cpu"
        torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))  # as many threads as the replica has cores
        self.max_loaded = settings.max_loaded_models
        self.trusted_repos = tuple(settings.trusted_model_repos)
        self._pipelines: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def _pipeline(self, model: ModelInfo):
        with self._lock:
            if model.path not in self._pipelines:
                self._pipelines[model.path] = self.diarization.load_pipeline(
                    model.path, device=self.device, source=model.source, trusted_repos=self.trusted_repos
                )
                while len(self._pipelines) > self.max_loaded:
                    self._pipelines.popitem(last=False)
            self._pipelines.move_to_end(model.path)
            return self._pipelines[model.path]

    def diarize(self, audio: np.ndarray, model: ModelInfo, options: SpeakerOptions) -> list[SpeakerTurn]:
        return self.diarization.diarize(
            self._pipeline(model),
            audio,
            num_speakers=options.num_speakers,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
        )
