"""The models of the Transcriber's and the Diarizer's replicas, held by Ray Serve's model
multiplexing.

A request names its model by `ModelInfo.version`, the folder and install id of one placing of
the model (`handle.options(multiplexed_model_id=...)`, serve_app/pipeline.py). Serve routes it
to a replica that holds that model or is loading it, else to one that holds the fewest; each
replica keeps the `max_loaded_models` it used last and lets the least recently used go when it
loads another (`max_num_models_per_replica`). A model deleted and downloaded again has another
version, so no replica answers for it with the weights it loaded before; those stay in the
replicas that loaded them until they are the least recently used, and a request that is still
decoding with them finishes with them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ray import serve

from serve_app.errors import NotFound
from serve_app.metrics import MODEL_LOAD_SECONDS, MODEL_LOADS, NO_METRICS, Recorder
from serve_app.models.catalogue import ModelCatalogue, ModelInfo

__all__ = ["multiplexed", "requested_model"]

Model = TypeVar("Model")


def multiplexed(
    load: Callable[[ModelInfo], Model], catalogue: ModelCatalogue, max_models: int, *, metrics: Recorder = NO_METRICS
) -> Callable[[str], Awaitable[Model]]:
    """`load` (blocking: it runs in a thread), as Serve's multiplexed loader of this replica:
    called with a version, it returns the model loaded for it, loading it first if the replica
    does not hold it. A version whose folder is gone or holds another model since is NotFound.
    Each load, and how long it took, goes to `metrics`."""

    def find_and_load(version: str) -> Model:
        model = catalogue.at_version(version)
        if model is None:
            raise NotFound(f"model not found: {version} was deleted or replaced")
        started = time.monotonic()
        try:
            loaded = load(model)
        except BaseException:
            metrics.record(MODEL_LOADS, 1, {"kind": model.kind, "outcome": "failed"})
            raise
        metrics.record(MODEL_LOADS, 1, {"kind": model.kind, "outcome": "loaded"})
        metrics.record(MODEL_LOAD_SECONDS, time.monotonic() - started, {"kind": model.kind})
        return loaded

    async def load_version(version: str) -> Model:
        return await asyncio.to_thread(find_and_load, version)

    # Decorated here, once a replica, not on a method of the class: the decorator fixes
    # max_num_models_per_replica, and max_loaded_models comes from the app's args.
    return serve.multiplexed(max_num_models_per_replica=max_models)(load_version)


async def requested_model(load_version: Callable[[str], Awaitable[Model]]) -> Model:
    """The model the current request names (`serve.get_multiplexed_model_id()`)."""
    version = serve.get_multiplexed_model_id()
    if not version:
        raise RuntimeError("the request names no model: call with handle.options(multiplexed_model_id=model.version)")
    return await load_version(version)
