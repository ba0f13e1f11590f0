"""downloads.py: models from a local hub into the catalogue, once per model, nothing left by a failure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakes import RecordedMetrics
from faster_whisper import WhisperModel, decode_audio
from hub_server import PIPELINE, TINY_EN, TOKEN, HubServer, pipeline_repo, use_local_hub_only, whisper_repo
from huggingface_hub import constants
from media import SAMPLE_WAV

from serve_app.errors import BadGateway, BadRequest, NotFound, Unauthorized
from serve_app.metrics import MODEL_DOWNLOADS
from serve_app.models.catalogue import METADATA_FILE, ModelCatalogue
from serve_app.models.downloads import Download, DownloadManager
from serve_app.models.embedded import EMBEDDED_MODELS

WHISPER_FILES = {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}


@pytest.fixture(autouse=True)
def local_hub_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_local_hub_only(monkeypatch, tmp_path)


@pytest.fixture
def server() -> Iterator[HubServer]:
    with HubServer({TINY_EN: whisper_repo(), PIPELINE: pipeline_repo()}) as running:
        yield running


@pytest.fixture
def catalogue(tmp_path: Path) -> ModelCatalogue:
    return ModelCatalogue(tmp_path / "models")


@pytest.fixture
def manager(catalogue: ModelCatalogue, server: HubServer) -> DownloadManager:
    return DownloadManager(catalogue, endpoint=server.url)


def size_of(content: Path | bytes) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


def model_bin_size(server: HubServer) -> int:
    return size_of(server.repos[TINY_EN].files["model.bin"])


def test_a_downloaded_model_is_listed_and_transcribes(
    manager: DownloadManager, catalogue: ModelCatalogue, server: HubServer
) -> None:
    download = manager.ensure("tiny.en")
    assert download.created
    model = download.result(timeout=120)
    assert (model.id, model.kind, model.source, model.multilingual) == ("tiny.en", "transcription", f"hub:{TINY_EN}", False)
    assert catalogue.find(TINY_EN) == model
    assert {path.name for path in Path(model.path).iterdir()} == WHISPER_FILES | {METADATA_FILE}
    last = download.snapshot()
    assert last["completed"] == last["total"] == sum(size_of(Path(model.path) / name) for name in WHISPER_FILES)

    whisper = WhisperModel(model.path, device="cpu", compute_type="int8", cpu_threads=2)
    audio = decode_audio(str(SAMPLE_WAV))[: 16000 * 12]  # Diane's and Sheila's first hellos
    segments, _info = whisper.transcribe(audio, language="en", beam_size=1)
    assert "hello" in " ".join(segment.text for segment in segments).lower()

    for name in ("tiny.en", TINY_EN):
        again = manager.ensure(name)
        assert not again.created and again.result() == model
    assert server.served(TINY_EN, "model.bin") == 1


def test_two_requests_at_once_share_one_transfer(manager: DownloadManager, catalogue: ModelCatalogue, server: HubServer) -> None:
    repo = server.repos[TINY_EN]
    repo.hold = threading.Event()
    both = threading.Barrier(2)

    def ask(_: int) -> Download:
        both.wait(timeout=30)
        return manager.ensure("tiny.en")

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(ask, range(2))
    assert first is second and first.created
    assert repo.waiting.wait(timeout=60), "the download never reached the hub"
    total = sum(size_of(repo.files[name]) for name in WHISPER_FILES)
    assert first.snapshot() == {"status": "downloading config.json", "total": total, "completed": 0}
    assert not first.wait(timeout=0.01) and manager.active() == [first]

    repo.hold.set()
    assert first.result(timeout=120) == second.result(timeout=120)
    assert server.served(TINY_EN, "model.bin") == 1
    assert [model.id for model in catalogue.models()] == ["tiny.en"]
    assert manager.active() == []


def test_an_async_caller_polls_without_blocking_its_loop(manager: DownloadManager) -> None:
    async def follow() -> tuple[list[dict], str]:
        download = manager.ensure("tiny.en")
        seen = [download.snapshot()]
        while not await asyncio.to_thread(download.wait, 0.05):
            seen.append(download.snapshot())
        model = await asyncio.wrap_future(download.future)
        return [*seen, download.snapshot()], model.id

    seen, model_id = asyncio.run(follow())
    assert model_id == "tiny.en"
    assert seen[0]["status"].startswith(("looking up", "downloading"))
    assert seen[-1]["completed"] == seen[-1]["total"]


def test_a_broken_download_leaves_nothing_and_can_be_retried(
    manager: DownloadManager, catalogue: ModelCatalogue, server: HubServer
) -> None:
    server.repos[TINY_EN].cut_at = model_bin_size(server) // 2  # every attempt, resumes included
    with pytest.raises(BadGateway) as broken:
        manager.ensure("tiny.en").result(timeout=120)
    assert broken.value.status == 502
    assert "broke off" in broken.value.reason and TINY_EN in broken.value.reason
    assert catalogue.models() == [] and catalogue.find("tiny.en") is None
    assert list(catalogue.root.rglob("*")) == [], "a partial download was left in the model folder"
    assert manager.active() == []

    server.repos[TINY_EN].cut_at = None
    retried = manager.ensure("tiny.en")
    assert retried.created and retried.result(timeout=120).id == "tiny.en"


def test_a_repository_the_hub_lacks_is_not_found(manager: DownloadManager, catalogue: ModelCatalogue) -> None:
    with pytest.raises(NotFound) as missing:
        manager.ensure("acme/no-such-model").result(timeout=60)
    assert missing.value.status == 404 and "acme/no-such-model" in missing.value.reason
    assert catalogue.models() == [] and list(catalogue.root.iterdir()) == []


def test_a_gated_repository_without_token_says_to_set_hf_token(manager: DownloadManager, catalogue: ModelCatalogue) -> None:
    with pytest.raises(Unauthorized) as refused:
        manager.ensure(PIPELINE).result(timeout=60)
    assert "HF_TOKEN" in refused.value.reason
    assert catalogue.models() == [] and list(catalogue.root.iterdir()) == []


def test_a_path_outside_the_model_folder_is_refused_at_once(
    manager: DownloadManager, catalogue: ModelCatalogue, server: HubServer
) -> None:
    with pytest.raises(BadRequest) as refused:
        manager.ensure("../../etc/passwd")
    assert refused.value.status == 400 and "outside the model folder" in refused.value.reason
    assert server.requests == [] and list(catalogue.root.iterdir()) == []


def test_a_present_model_needs_no_hub(
    manager: DownloadManager, catalogue: ModelCatalogue, server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    [tiny] = catalogue.seed(model for model in EMBEDDED_MODELS if model.id == "tiny.en")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in ("tiny.en", TINY_EN, " TINY.EN "):
        present = manager.ensure(name)
        assert not present.created and present.done() and present.result() == tiny
    assert server.requests == []


def test_each_download_that_ends_goes_to_the_metrics_with_its_outcome(catalogue: ModelCatalogue, server: HubServer) -> None:
    metrics = RecordedMetrics()
    manager = DownloadManager(catalogue, endpoint=server.url, token=TOKEN, metrics=metrics)
    with pytest.raises(NotFound):
        manager.ensure("acme/no-such-model").result(timeout=60)
    assert manager.ensure(PIPELINE).result(timeout=120).kind == "diarization"
    assert not manager.ensure(PIPELINE).created  # present: nothing downloaded, nothing counted
    assert [tags["outcome"] for tags in metrics.tagged(MODEL_DOWNLOADS)] == ["failed", "downloaded"]
