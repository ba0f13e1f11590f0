"""The ModelStore deployment: one replica that owns the model folder and answers what is in it."""

from __future__ import annotations

from ray import serve

from serve_app.catalogue import ModelCatalogue, ModelInfo
from serve_app.embedded import EMBEDDED_MODELS
from serve_app.model_ids import WHISPER_1, canonical
from serve_app.settings import AppSettings


@serve.deployment(ray_actor_options={"num_cpus": 0}, num_replicas=1)
class ModelStore:
    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.catalogue = ModelCatalogue(settings.model_dir)
        self.catalogue.clean_partials()
        if settings.embedded_models:
            self.catalogue.seed(EMBEDDED_MODELS)

    def list(self) -> list[ModelInfo]:
        return self.catalogue.models()

    def get(self, name: str) -> ModelInfo | None:
        if canonical(name) == WHISPER_1:
            name = self.settings.default_model
        return self.catalogue.find(name)
