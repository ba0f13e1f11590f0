"""A Transcriber that can never be scheduled is reported at once, not waited on for ever."""

from __future__ import annotations

import time

import httpx
import pytest
from media import SAMPLE_WAV

from serve_app.api.readiness import fits_some_node
from serve_app.local import application, load_config

NODES = [{"CPU": 2.0, "memory": 8e9}, {"CPU": 8.0, "GPU": 1.0}]


@pytest.mark.parametrize(
    ("required", "fits"),
    [
        ({"CPU": 1.0}, True),
        ({"CPU": 16.0, "GPU": 1.0}, False),
        ({"CPU": 4.0, "GPU": 1.0}, True),
        ({"CPU": 4.0}, True),
        ({"CPU": 0.0}, True),
        ({"TPU": 1.0}, False),
    ],
)
def test_fits_some_node(required: dict, fits: bool) -> None:
    assert fits_some_node(required, NODES) is fits


@pytest.mark.slow
def test_the_gpu_config_on_a_host_without_gpu_answers_503_with_the_reason(service) -> None:
    gpu = application(
        load_config("config.yaml"), name="gpu", route_prefix="/gpu", model_dir=service.model_dir, allow_anonymous=True
    )
    service.deploy([*service.apps, gpu])
    try:
        deadline = time.monotonic() + 60
        while True:
            health = httpx.get(f"{service.url}/gpu/v1/health", timeout=10)
            if health.status_code == 503 and "never be scheduled" in health.json()["reason"]:
                break
            assert time.monotonic() < deadline, f"no clear 503 within a minute: {health.status_code} {health.text}"
            time.sleep(1)
        assert "GPU" in health.json()["reason"]
        assert "config.cpu.yaml" in health.json()["reason"]

        # A request that waited for the replica would run into the client's timeout.
        with open(SAMPLE_WAV, "rb") as audio:
            response = httpx.post(
                f"{service.url}/gpu/v1/audio/transcriptions", files={"file": audio}, data={"model": "tiny.en"}, timeout=10
            )
        assert response.status_code == 503
        assert "never be scheduled" in response.json()["reason"]
    finally:
        service.deploy(service.apps)
    service.wait_healthy(timeout=60)
