"""hub.py: what a path names, and downloads through huggingface_hub from a local hub with faults."""

from __future__ import annotations

import dataclasses
import filecmp
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from faster_whisper.utils import _MODELS, available_models
from hub_server import PIPELINE, TINY_EN, TOKEN, HubRepo, HubServer, pipeline_repo, use_local_hub_only, whisper_repo
from huggingface_hub import constants

from serve_app.errors import BadGateway, BadRequest, Forbidden, NotFound, Unauthorized
from serve_app.local import free_port
from serve_app.models import hub

WHISPER_FILES = {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}
PIPELINE_FILES = {
    "config.yaml",
    "segmentation/config.yaml",
    "segmentation/pytorch_model.bin",
    "embedding/pytorch_model.bin",
    "plda/plda.npz",
    "plda/xvec_transform.npz",
}
NOT_A_MODEL = "acme/meeting-notes"
LONE_PYANNOTE_MODEL = "acme/segmentation"


@pytest.fixture(autouse=True)
def local_hub_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_local_hub_only(monkeypatch, tmp_path)


@pytest.fixture
def server() -> Iterator[HubServer]:
    repos = {
        TINY_EN: whisper_repo(),
        PIPELINE: pipeline_repo(),
        NOT_A_MODEL: HubRepo(files={"README.md": b"# notes\n", "notes.txt": b"nothing to serve\n"}),
        LONE_PYANNOTE_MODEL: HubRepo(files={"config.yaml": b"task: {}\nmodel: {}\n", "pytorch_model.bin": b"\0" * 64}),
    }
    with HubServer(repos) as running:
        yield running


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def ignore(_event: dict) -> None:
    pass


# resolve: names to repositories, ids and aliases; no network.


@pytest.mark.parametrize("size", available_models())
def test_every_faster_whisper_size_names_its_repository(size: str) -> None:
    source = hub.resolve(size)
    assert (source.repo_id, source.revision, source.model_id, source.kind) == (_MODELS[size], None, size, "transcription")
    assert _MODELS[size] in source.aliases


@pytest.mark.parametrize(
    ("path", "repo_id", "revision", "model_id", "aliases"),
    [
        ("tiny.en", "Systran/faster-whisper-tiny.en", None, "tiny.en", {"Systran/faster-whisper-tiny.en"}),
        ("large", "Systran/faster-whisper-large-v3", None, "large", {"Systran/faster-whisper-large-v3", "large-v3"}),
        ("turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo", None, "turbo", {"large-v3-turbo"}),
        (
            "Systran/faster-whisper-large-v3",
            "Systran/faster-whisper-large-v3",
            None,
            "faster-whisper-large-v3",
            {"Systran/faster-whisper-large-v3", "large-v3", "large"},
        ),
        ("org/Repo@v1.0", "org/Repo", "v1.0", "repo_v1.0", {"org/Repo@v1.0"}),
        ("org/repo@refs/pr/1", "org/repo", "refs/pr/1", "repo_refs_pr_1", {"org/repo@refs/pr/1"}),
        ("  base.en  ", "Systran/faster-whisper-base.en", None, "base.en", {"Systran/faster-whisper-base.en"}),
    ],
)
def test_sizes_and_repositories(path: str, repo_id: str, revision: str | None, model_id: str, aliases: set[str]) -> None:
    source = hub.resolve(path)
    assert (source.repo_id, source.revision, source.model_id) == (repo_id, revision, model_id)
    assert aliases <= set(source.aliases)
    assert model_id not in source.aliases


@pytest.mark.parametrize(
    ("path", "model_id", "repo_id"),
    [
        ("ggml-large-v3.bin", "ggml-large-v3", "Systran/faster-whisper-large-v3"),
        ("ggml-medium-q5_0.bin", "ggml-medium-q5_0", "Systran/faster-whisper-medium"),
        ("ggml-large-v3-turbo-q8_0.bin", "ggml-large-v3-turbo-q8_0", "mobiuslabsgmbh/faster-whisper-large-v3-turbo"),
        ("ggml-tiny.en.bin", "ggml-tiny.en", "Systran/faster-whisper-tiny.en"),
        ("ggml-tiny.en", "ggml-tiny.en", "Systran/faster-whisper-tiny.en"),
        ("GGML-Base.bin", "ggml-base", "Systran/faster-whisper-base"),
        # go-whisper's tinydiarize models: the weights of that size (speakers come from the Diarizer)
        ("ggml-small.en-tdrz.bin", "ggml-small.en-tdrz", "Systran/faster-whisper-small.en"),
        ("ggml-small.en-tdrz", "ggml-small.en-tdrz", "Systran/faster-whisper-small.en"),
        ("ggml-base-tdrz-q5_0.bin", "ggml-base-tdrz-q5_0", "Systran/faster-whisper-base"),
    ],
)
def test_go_whisper_file_names_map_to_their_ctranslate2_model(path: str, model_id: str, repo_id: str) -> None:
    source = hub.resolve(path)
    assert (source.model_id, source.repo_id, source.kind) == (model_id, repo_id, "transcription")
    assert source.aliases == (f"{model_id}.bin",)


def test_a_pyannote_repository_is_guessed_to_be_a_pipeline() -> None:
    assert hub.resolve(PIPELINE).kind == "diarization"
    assert hub.resolve(PIPELINE).model_id == "speaker-diarization-community-1"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "missing path"),
        ("   ", "missing path"),
        ("../../etc/passwd", "outside the model folder"),
        ("/etc/passwd", "outside the model folder"),
        ("..", "outside the model folder"),
        ("models\\ggml-base.bin", "outside the model folder"),
        ("org//repo", "outside the model folder"),
        ("./tiny.en", "outside the model folder"),
        ("org/repo@../../etc", "outside the model folder"),
        ("org/repo/extra", "not a hub repository id"),
        ("org/re po", "not a hub repository id"),
        ("org/..repo", "not a hub repository id"),
        ("org/repo@", "no valid revision"),
        ("tiny.en@v1", "a revision goes with a hub repository id"),
        ("whisper-huge", "not a model we can serve"),
        ("ggml-huge.bin", "no CTranslate2 equivalent"),
        ("https://huggingface.co/Systran/faster-whisper-base", "is a URL"),
    ],
)
def test_paths_we_cannot_serve_are_bad_requests(path: str, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        hub.resolve(path)
    assert refused.value.status == 400
    assert reason in refused.value.reason


# download: through huggingface_hub, from the local hub.


def test_download_fetches_only_the_model_files_whole(server: HubServer, tmp_path: Path) -> None:
    listing = hub.download(hub.resolve("tiny.en"), tmp_path, progress=ignore, endpoint=server.url)
    repo = server.repos[TINY_EN]
    assert (listing.kind, listing.commit) == ("transcription", repo.commit)
    assert files_in(tmp_path) == WHISPER_FILES, "README, .gitattributes or huggingface_hub's .cache came along"
    for name in WHISPER_FILES:
        assert filecmp.cmp(tmp_path / name, repo.files[name], shallow=False), f"{name} differs from the hub's"


def test_progress_grows_to_the_total(server: HubServer, tmp_path: Path) -> None:
    events: list[dict] = []
    listing = hub.download(hub.resolve("tiny.en"), tmp_path, progress=events.append, endpoint=server.url, interval=0)
    total = sum((tmp_path / name).stat().st_size for name in WHISPER_FILES)
    assert listing.total_bytes == total
    assert all(set(event) == {"status", "total", "completed"} and event["total"] == total for event in events)
    completed = [event["completed"] for event in events]
    assert completed == sorted(completed) and completed[0] == 0 and completed[-1] == total
    assert {event["status"] for event in events} == {f"downloading {name}" for name in WHISPER_FILES}
    model_bin = [event["completed"] for event in events if event["status"] == "downloading model.bin"]
    assert len(set(model_bin)) > 2, "no progress reported while model.bin was on its way"


def test_progress_within_a_file_waits_for_the_interval(server: HubServer, tmp_path: Path) -> None:
    events: list[dict] = []
    hub.download(hub.resolve("tiny.en"), tmp_path, progress=events.append, endpoint=server.url, interval=3600)
    model_bin = [event["completed"] for event in events if event["status"] == "downloading model.bin"]
    assert len(model_bin) == 2, "within a file, only its start and its end may be reported in an hour"


def test_a_gated_pipeline_needs_hf_token(server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Unauthorized) as refused:
        hub.inspect(hub.resolve(PIPELINE), endpoint=server.url)
    assert refused.value.status == 401
    assert "HF_TOKEN" in refused.value.reason and PIPELINE in refused.value.reason

    monkeypatch.setenv("HF_TOKEN", "hf_someone_else")
    with pytest.raises(Forbidden) as refused:
        hub.inspect(hub.resolve(PIPELINE), endpoint=server.url)
    assert "HF_TOKEN" in refused.value.reason

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    listing = hub.download(hub.resolve(PIPELINE), tmp_path, progress=ignore, endpoint=server.url)
    assert listing.kind == "diarization"
    assert files_in(tmp_path) == PIPELINE_FILES, "README, .gitattributes or huggingface_hub's .cache came along"
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["pipeline"]["name"] == "pyannote.audio.pipelines.SpeakerDiarization"


def test_a_token_given_directly_overrides_the_environment(server: HubServer, tmp_path: Path) -> None:
    listing = hub.download(hub.resolve(PIPELINE), tmp_path, progress=ignore, endpoint=server.url, token=TOKEN)
    assert listing.kind == "diarization"


def test_what_the_hub_does_not_have_is_not_found(server: HubServer, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as missing:
        hub.inspect(hub.resolve("acme/no-such-model"), endpoint=server.url)
    assert missing.value.status == 404 and "acme/no-such-model" in missing.value.reason

    with pytest.raises(NotFound) as missing:
        hub.inspect(hub.resolve(f"{TINY_EN}@v9"), endpoint=server.url)
    assert "v9" in missing.value.reason

    listing = hub.inspect(hub.resolve("tiny.en"), endpoint=server.url)
    gone = dataclasses.replace(listing, files=(("config.json", 2317), ("model.safetensors", 1)))
    with pytest.raises(NotFound) as missing:
        hub.download(gone, tmp_path, progress=ignore, endpoint=server.url)
    assert "model.safetensors" in missing.value.reason


@pytest.mark.parametrize("repo_id", [NOT_A_MODEL, LONE_PYANNOTE_MODEL])
def test_a_repository_without_a_model_we_serve_is_a_bad_request(server: HubServer, repo_id: str) -> None:
    with pytest.raises(BadRequest) as refused:
        hub.inspect(hub.resolve(repo_id), endpoint=server.url)
    assert "not a model we can serve" in refused.value.reason


def test_a_failing_hub_is_a_bad_gateway(server: HubServer) -> None:
    server.repos[TINY_EN].status = 503
    with pytest.raises(BadGateway) as failed:
        hub.inspect(hub.resolve("tiny.en"), endpoint=server.url)
    assert failed.value.status == 502 and "503" in failed.value.reason


def test_an_unreachable_hub_is_a_bad_gateway() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BadGateway) as failed:
        hub.inspect(hub.resolve("tiny.en"), endpoint=endpoint)
    assert endpoint in failed.value.reason


def test_a_hub_that_cannot_be_reached_names_hf_endpoint_and_hf_hub_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local hub started, then stopped: its port is closed. Both the look-up and a download
    of a listing made while it ran say which setting to change, not that a download broke off."""
    with HubServer({TINY_EN: whisper_repo()}) as running:
        endpoint = running.url
        listing = hub.inspect(hub.resolve("tiny.en"), endpoint=endpoint)
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda _seconds: None)  # its retries' waits
    for attempt in (
        lambda: hub.inspect(hub.resolve("tiny.en"), endpoint=endpoint),
        lambda: hub.download(listing, tmp_path, progress=ignore, endpoint=endpoint),
    ):
        with pytest.raises(BadGateway) as failed:
            attempt()
        reason = failed.value.reason
        assert f"cannot reach the hub at {endpoint} (HF_ENDPOINT)" in reason
        assert "HF_HUB_OFFLINE=1" in reason and "broke off" not in reason


def test_a_hub_of_no_such_host_cannot_be_reached() -> None:
    with pytest.raises(BadGateway) as failed:
        hub.inspect(hub.resolve("tiny.en"), endpoint="http://hub.invalid")
    assert "cannot reach the hub at http://hub.invalid (HF_ENDPOINT)" in failed.value.reason


def test_offline_mode_turns_downloads_off(server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BadGateway) as refused:
        hub.inspect(hub.resolve("tiny.en"), endpoint=server.url)
    assert "HF_HUB_OFFLINE" in refused.value.reason
    assert server.requests == []


def test_a_connection_broken_once_is_resumed(server: HubServer, tmp_path: Path) -> None:
    repo = server.repos[TINY_EN]
    repo.cut_at, repo.cuts = repo.files["model.bin"].stat().st_size // 2, 1  # type: ignore[union-attr]
    hub.download(hub.resolve("tiny.en"), tmp_path, progress=ignore, endpoint=server.url)
    assert server.served(TINY_EN, "model.bin") == 2
    assert filecmp.cmp(tmp_path / "model.bin", repo.files["model.bin"], shallow=False)  # type: ignore[arg-type]


def test_hf_endpoint_and_hf_token_come_from_the_environment(server: HubServer, tmp_path: Path) -> None:
    """In a fresh process, as a deployment runs: huggingface_hub reads HF_ENDPOINT at import."""
    script = (
        "import sys; from pathlib import Path; from serve_app.models import hub\n"
        "listing = hub.download(hub.resolve(sys.argv[1]), Path(sys.argv[2]), progress=lambda event: None)\n"
        "print(listing.kind)\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    environment |= {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home")}
    folder = tmp_path / "model"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, PIPELINE, str(folder)],
        cwd=Path(__file__).parent.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["diarization"]
    assert files_in(folder) == PIPELINE_FILES


def test_xet_transfers_report_progress_too() -> None:
    """Most hub repositories are stored with Xet now, downloaded by hf_xet, which reports through
    another huggingface_hub path than plain HTTP: its bytes must reach the progress callback once."""
    from types import SimpleNamespace

    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    events: list[dict] = []
    meter = hub._Meter(events.append, 1000, interval=0)
    meter.start("model.bin")
    with XetDownloadProgressReporter(
        reconstruction_desc="model.bin", total=1000, log_level=0, tqdm_class=meter.bar_class()
    ) as bars:
        for written, received in [(0, 300), (400, 600), (1000, 800)]:
            bars.update_progress(
                SimpleNamespace(
                    total_bytes_completed=written,
                    total_transfer_bytes_completed=received,
                    total_bytes=1000,
                    total_bytes_completion_rate=None,
                    total_transfer_bytes_completion_rate=None,
                )
            )
    assert [event["completed"] for event in events] == [0, 400, 1000]
