from __future__ import annotations

import pytest

from serve_app.models.ids import is_folder_safe, model_id_for_file, model_id_for_repo


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("ggml-large-v3.bin", "ggml-large-v3"),
        ("ggml-medium-q5_0.bin", "ggml-medium-q5_0"),
        ("models/GGML-Tiny.EN.bin", "ggml-tiny.en"),
        ("My Model (v2).bin", "my_model__v2_"),
        ("C:\\models\\ggml-base.bin", "ggml-base"),
    ],
)
def test_go_whisper_file_ids(name: str, model_id: str) -> None:
    assert model_id_for_file(name) == model_id


@pytest.mark.parametrize(
    ("repo", "revision", "model_id"),
    [
        ("Systran/faster-whisper-large-v3", None, "faster-whisper-large-v3"),
        ("distil-whisper/distil-large-v3.5-ct2", None, "distil-large-v3.5-ct2"),
        ("org/Repo_Name", "v1.0", "repo_name_v1.0"),
        ("pyannote/speaker-diarization-3.1", None, "speaker-diarization-3.1"),
    ],
)
def test_repository_ids(repo: str, revision: str | None, model_id: str) -> None:
    assert model_id_for_repo(repo, revision) == model_id


@pytest.mark.parametrize("model_id", ["tiny.en", "ggml-medium-q5_0", "repo_v1.0", "distil-large-v3.5-ct2", "_x"])
def test_ids_the_rules_make_can_name_a_folder(model_id: str) -> None:
    assert is_folder_safe(model_id)


@pytest.mark.parametrize("model_id", ["", ".", "..", ".partial-x", "a/b", "..\\x", "Tiny.en", "a b", "x\0"])
def test_ids_that_would_escape_hide_or_clash_cannot(model_id: str) -> None:
    assert not is_folder_safe(model_id)
