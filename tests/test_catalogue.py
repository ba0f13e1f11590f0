"""The model catalogue on disk: seeding the embedded pack, atomic adds, aliases, deletes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from serve_app.models.catalogue import METADATA_FILE, ModelCatalogue
from serve_app.models.embedded import EMBEDDED_MODELS

TINY = next(model for model in EMBEDDED_MODELS if model.id == "tiny.en")


@pytest.fixture
def catalogue(tmp_path: Path) -> ModelCatalogue:
    return ModelCatalogue(tmp_path / "models")


def test_seeding_writes_tiny_en_once_and_respects_a_delete(catalogue: ModelCatalogue) -> None:
    assert [m.id for m in catalogue.seed([TINY])] == ["tiny.en"]
    model = catalogue.find("Systran/faster-whisper-tiny.en")
    assert model is not None and model.id == "tiny.en" and model.multilingual is False
    assert {p.name for p in Path(model.path).iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
        METADATA_FILE,
    }
    assert catalogue.seed([TINY]) == []

    catalogue.remove("tiny.en")
    assert catalogue.find("tiny.en") is None
    assert catalogue.seed([TINY]) == [], "a model the user deleted came back"
    assert list(catalogue.root.iterdir()) == [catalogue.root / ".seeded.json"]


def test_a_required_embedded_model_comes_back_after_a_delete(catalogue: ModelCatalogue) -> None:
    catalogue.seed([TINY])
    catalogue.remove("tiny.en")
    assert [m.id for m in catalogue.seed([TINY], required=["tiny.en"])] == ["tiny.en"]
    catalogue.remove("tiny.en")
    assert [m.id for m in catalogue.seed([TINY], required=["Systran/faster-whisper-tiny.en"])] == ["tiny.en"]


@pytest.mark.parametrize("name", ["TINY.EN", "tiny.en ", " tiny.en", "Tiny.En", "systran/faster-whisper-tiny.en"])
def test_a_model_answers_to_its_exact_id_and_aliases_only(catalogue: ModelCatalogue, name: str) -> None:
    catalogue.seed([TINY])
    assert catalogue.find("tiny.en") is not None
    assert catalogue.find("Systran/faster-whisper-tiny.en") is not None
    assert catalogue.find(name) is None


def test_the_api_shows_a_models_folder_by_its_name_not_the_servers_path(catalogue: ModelCatalogue) -> None:
    [model] = catalogue.seed([TINY])
    assert model.path == str(catalogue.root / "tiny.en")
    assert model.to_json()["path"] == "tiny.en"
    assert str(catalogue.root) not in json.dumps(model.to_json())


def test_a_failed_write_leaves_nothing(catalogue: ModelCatalogue) -> None:
    def broken(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"half")
        raise OSError("connection closed")

    with pytest.raises(OSError):
        catalogue.add("broken", broken)
    assert catalogue.models() == []
    assert list(catalogue.root.iterdir()) == []


def test_a_folder_copied_in_by_hand_is_listed(catalogue: ModelCatalogue) -> None:
    folder = catalogue.root / "my-model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    (folder / "vocabulary.txt").write_text("tok\n" * 51865)
    (catalogue.root / "not-a-model").mkdir()
    [model] = catalogue.models()
    assert (model.id, model.multilingual, model.source) == ("my-model", True, "local")


def test_add_records_metadata_and_aliases(catalogue: ModelCatalogue) -> None:
    def write(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"x" * 10)
        (folder / "config.json").write_text("{}")
        (folder / "vocabulary.txt").write_text("tok\n" * 51864)

    info = catalogue.add(
        "small.en", write, source="hub:Systran/faster-whisper-small.en", aliases=["Systran/faster-whisper-small.en"]
    )
    assert info.multilingual is False
    stored = json.loads((catalogue.root / "small.en" / METADATA_FILE).read_text())
    assert stored["source"] == "hub:Systran/faster-whisper-small.en"
    assert catalogue.find("Systran/faster-whisper-small.en") == info
    assert catalogue.find("SYSTRAN/faster-whisper-small.en") is None
    assert info.to_json()["object"] == "model"


def test_leftovers_of_a_dead_process_are_cleaned(catalogue: ModelCatalogue) -> None:
    (catalogue.root / ".partial-base-1234").mkdir()
    catalogue.clean_partials()
    assert list(catalogue.root.iterdir()) == []


def weights(folder: Path) -> None:
    (folder / "model.bin").write_bytes(b"x" * 10)
    (folder / "config.json").write_text("{}")


def test_a_model_placed_again_under_its_id_has_another_version(catalogue: ModelCatalogue) -> None:
    first = catalogue.add("copy", weights)
    assert first.version.startswith("copy@") and catalogue.at_version(first.version) == first
    assert "install_id" not in first.to_json(), "the version is the replicas' business, not the API's"
    catalogue.remove("copy")
    assert catalogue.at_version(first.version) is None, "a deleted model was found by its version"
    again = catalogue.add("copy", weights)  # within the same second: `created` alone would not tell them apart
    assert again.version != first.version
    assert catalogue.at_version(first.version) is None, "the new copy answered for the old one"
    assert catalogue.at_version(again.version) == again == catalogue.find("copy")


def test_a_folder_copied_in_by_hand_is_versioned_by_its_modification_time(catalogue: ModelCatalogue) -> None:
    folder = catalogue.root / "by-hand"
    folder.mkdir()
    weights(folder)
    [model] = catalogue.models()
    assert catalogue.at_version(model.version) == model
    later = folder.stat().st_mtime_ns + 1_000_000  # as a copy made again a millisecond later
    os.utime(folder, ns=(later, later))
    [again] = catalogue.models()
    assert again.version != model.version and catalogue.at_version(model.version) is None


@pytest.mark.parametrize("version", ["", "copy", "copy@", "@1", "../copy@1", ".partial-copy@1", "a/copy@1"])
def test_a_version_names_one_folder_of_the_catalogue_or_nothing(catalogue: ModelCatalogue, version: str) -> None:
    catalogue.add("copy", weights)
    assert catalogue.at_version(version) is None
