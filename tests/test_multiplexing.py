"""Ray Serve's model multiplexing holds the Transcriber's and the Diarizer's models: a request
names its model's version, and each replica reports the versions it holds to Serve's
controller, whose routers send a request to a replica that holds its model."""

from __future__ import annotations

import time

import httpx
import pytest
import ray
from conftest import HUB_COPY
from media import SAMPLE_WAV
from ray.serve._private.common import DeploymentID, ReplicaState
from ray.serve.context import _get_global_client

from serve_app.local import APP_NAME
from serve_app.models.catalogue import ModelCatalogue

pytestmark = pytest.mark.slow


def held(deployment: str) -> list[set[str]]:
    """The multiplexed model ids each running replica of `deployment` has reported to Serve's
    controller, as its routers see them (read through the controller's hook for tests)."""
    controller = _get_global_client()._controller
    replicas = ray.get(controller._dump_replica_states_for_testing.remote(DeploymentID(name=deployment, app_name=APP_NAME)))
    return [set(replica.multiplexed_model_ids) for replica in replicas.get([ReplicaState.RUNNING])]


def wait_until_held(deployment: str, versions: set[str], timeout: float = 30) -> set[str]:
    """What the replica that holds all of `versions` reports, once one does."""
    deadline = time.monotonic() + timeout
    while not (holding := [ids for ids in held(deployment) if versions <= ids]):
        assert time.monotonic() < deadline, f"no {deployment} replica reports {versions}: {held(deployment)}"
        time.sleep(0.2)
    return holding[0]


def transcribe(client: httpx.Client, model: str, route: str = "transcriptions") -> httpx.Response:
    response = client.post(f"/v1/audio/{route}", files={"file": SAMPLE_WAV.open("rb")}, data={"model": model})
    assert response.status_code == 200, response.text
    return response


def test_requests_naming_two_models_are_served_and_serve_knows_the_replica_holds_both(client: httpx.Client, service) -> None:
    catalogue = ModelCatalogue(service.model_dir)
    for name in ("tiny.en", "base"):
        assert "Chicago" in transcribe(client, name).json()["text"]
    versions = {catalogue.find(name).version for name in ("tiny.en", "base")}
    assert wait_until_held("Transcriber", versions) == versions, "max_loaded_models is 2"


def test_the_diarizer_holds_its_pipeline_by_serve_too(client: httpx.Client, service) -> None:
    transcribe(client, "tiny.en", route="diarize")
    wait_until_held("Diarizer", {ModelCatalogue(service.model_dir).find("pyannote-campplus").version})


def test_a_model_downloaded_again_after_a_delete_is_loaded_again(client: httpx.Client, service) -> None:
    catalogue = ModelCatalogue(service.model_dir)
    model = client.post("/v1/models", json={"path": HUB_COPY}).json()["id"]
    transcribe(client, model)
    deleted = catalogue.find(model).version
    wait_until_held("Transcriber", {deleted})
    assert client.delete(f"/v1/models/{model}").status_code == 200
    assert client.post("/v1/models", json={"path": HUB_COPY}).status_code == 201
    again = catalogue.find(model).version
    assert again != deleted
    transcribe(client, model)
    wait_until_held("Transcriber", {again})
    client.delete(f"/v1/models/{model}")
