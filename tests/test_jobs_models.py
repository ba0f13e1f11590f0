"""A job's model: the names the old job API's clients send, and the download a job makes when
its model is not in the folder, through the ModelStore's own class (not deployed) from a local
hub-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeHandle, add_model_folder
from hub_server import HubServer, use_local_hub_only, whisper_repo
from huggingface_hub import constants
from test_jobs_scheduler import Setup, run, until

from deployments.model_store import ModelStore
from serve_app.errors import BadGateway, BadRequest
from serve_app.jobs import HandleModels, JobStatus
from serve_app.jobs.models import check_model_name, download_path
from serve_app.settings import AppSettings

TINY = "Systran/faster-whisper-tiny"  # where `tiny` comes from; served with tiny.en's files


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("openai/whisper-large-v3", "large-v3"),
        ("OpenAI/Whisper-Tiny.en", "tiny.en"),
        ("openai/whisper-large", "large-v1"),  # OpenAI's first large, not faster-whisper's `large`
        ("openai/whisper-large-v3-turbo", "large-v3-turbo"),
        ("distil-whisper/distil-large-v3", "distil-large-v3"),
        ("large-v2", "large-v2"),
        ("Systran/faster-whisper-small", "Systran/faster-whisper-small"),
        ("my-org/my-model", "my-org/my-model"),
    ],
)
def test_openais_hub_ids_stand_for_their_ctranslate2_conversions(name: str, path: str) -> None:
    assert download_path(name) == path


@pytest.mark.parametrize("name", ["tiny", "base.en", "large", "large-v2", "openai/whisper-medium", "ggml-small.bin"])
def test_names_a_download_can_give_pass(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize("name", ["huge", "whisper", "", "/etc/passwd", "http://example.com/m.bin", "tiny@main"])
def test_names_no_download_can_give_are_refused(name: str) -> None:
    with pytest.raises(BadRequest, match="cannot be downloaded"):
        check_model_name(name)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    use_local_hub_only(monkeypatch, tmp_path)
    with HubServer({TINY: whisper_repo()}) as server:
        yield server


def model_store(tmp_path: Path, endpoint: str) -> ModelStore:
    settings = AppSettings.model_validate({"model_dir": str(tmp_path / "models"), "embedded_models": False})
    store = ModelStore.func_or_class(settings)  # the deployment's own class, not deployed
    store.downloads.endpoint = endpoint
    return store


def test_a_hub_id_finds_the_model_of_the_size_it_stands_for(tmp_path: Path) -> None:
    store = model_store(tmp_path, "http://127.0.0.1:9")
    add_model_folder(store, "large-v3")
    models = HandleModels(FakeHandle(store))

    async def test() -> None:
        assert (await models.find("large-v3")).id == "large-v3"
        assert (await models.find("openai/whisper-large-v3")).id == "large-v3"
        assert await models.find("tiny") is None

    asyncio.run(test())


def test_a_job_naming_a_missing_model_downloads_it_then_runs(tmp_path: Path, hub: HubServer) -> None:
    store = model_store(tmp_path, hub.url)
    setup = Setup(tmp_path)
    setup.models = HandleModels(FakeHandle(store))  # type: ignore[assignment]
    job = setup.job("call.wav", model="tiny")

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        await until(lambda: "call.wav" in setup.pipeline.started, "started once its model came", timeout=120)
        setup.pipeline.finish("call.wav")
        await until(lambda: setup.status(job) == JobStatus.COMPLETED, "done")
        await scheduler.stop()

    run(test)
    model = store.get("tiny")
    assert model is not None and (model.id, model.source) == ("tiny", f"hub:{TINY}")
    assert setup.pipeline.models["call.wav"] == "tiny"
    assert hub.served(TINY, "model.bin") == 1
    done = setup.store.get(job.id)
    assert (done.model, done.stage, done.error) == ("tiny", "", "")


def test_a_job_whose_model_cannot_be_downloaded_fails_with_the_hubs_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network for the hub
    store = model_store(tmp_path, "http://127.0.0.1:9")
    setup = Setup(tmp_path)
    setup.models = HandleModels(FakeHandle(store))  # type: ignore[assignment]
    job = setup.job("call.wav", model="openai/whisper-large-v2", callback="http://hooks.example.com/done")

    async def test() -> None:
        scheduler = setup.scheduler()
        scheduler.start()
        await until(lambda: setup.status(job) == JobStatus.FAILED, "failed")
        await until(lambda: len(setup.delivered) == 1, "called back")
        await scheduler.stop()

    run(test)
    failed = setup.store.get(job.id)
    reason = BadGateway(
        "downloads from the hub are off on this server (HF_HUB_OFFLINE is set): unset it to download large-v2"
    ).reason
    assert (failed.error, setup.delivered[0]["error"]) == (reason, reason)
    assert setup.pipeline.started == [] and store.get("large-v2") is None
