"""The job API reads media only from the configured folders and writes only into the configured ones."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serve_app.errors import BadRequest, Forbidden
from serve_app.jobs import Job, JobFolders, admit_submission


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """media/ (with a.mp3), out/, and secret/ (with key.txt), which no folder allows."""
    for folder in ("media", "out", "secret"):
        (tmp_path / folder).mkdir()
    (tmp_path / "media" / "a.mp3").write_bytes(b"ID3 audio")
    (tmp_path / "secret" / "key.txt").write_text("secret")
    return tmp_path


@pytest.fixture
def folders(disk: Path) -> JobFolders:
    return JobFolders(media=[disk / "media"], outputs=[disk / "out"])


def forbidden(call: Callable[[str], Path], path: str) -> str:
    with pytest.raises(Forbidden) as refused:
        call(path)
    assert refused.value.status == 403
    return refused.value.reason


def bad(call: Callable[[str], Path], path: str) -> str:
    with pytest.raises(BadRequest) as refused:
        call(path)
    assert refused.value.status == 400
    return refused.value.reason


def test_a_media_file_inside_the_folder_is_read(folders: JobFolders, disk: Path) -> None:
    assert folders.media_file(str(disk / "media" / "a.mp3")) == (disk / "media" / "a.mp3").resolve()


def test_a_system_file_is_forbidden(folders: JobFolders, disk: Path) -> None:
    reason = forbidden(folders.media_file, "/etc/passwd")
    assert reason.startswith("path '/etc/passwd' is outside the folders the job API may read media from")
    assert str((disk / "media").resolve()) in reason


def test_dot_dot_cannot_climb_out(folders: JobFolders, disk: Path) -> None:
    escape = f"{disk}/media/../secret/key.txt"
    assert "reaches through '..' outside" in forbidden(folders.media_file, escape)
    assert "reaches through '..' outside" in forbidden(folders.media_file, f"{disk}/media/../../../../etc/passwd")


def test_dot_dot_that_stays_inside_is_fine(folders: JobFolders, disk: Path) -> None:
    (disk / "media" / "sub").mkdir()
    assert folders.media_file(f"{disk}/media/sub/../a.mp3").name == "a.mp3"


def test_a_symbolic_link_out_of_the_folder_is_forbidden(folders: JobFolders, disk: Path) -> None:
    (disk / "media" / "innocent.mp3").symlink_to(disk / "secret" / "key.txt")
    (disk / "media" / "shared").symlink_to(disk / "secret", target_is_directory=True)
    assert "leads through a symbolic link outside" in forbidden(folders.media_file, str(disk / "media" / "innocent.mp3"))
    assert "leads through a symbolic link outside" in forbidden(folders.media_file, str(disk / "media" / "shared" / "key.txt"))


def test_a_symbolic_link_that_stays_inside_is_followed(folders: JobFolders, disk: Path) -> None:
    (disk / "media" / "alias.mp3").symlink_to(disk / "media" / "a.mp3")
    assert folders.media_file(str(disk / "media" / "alias.mp3")) == (disk / "media" / "a.mp3").resolve()


def test_a_sibling_folder_sharing_the_name_prefix_is_outside(folders: JobFolders, disk: Path) -> None:
    (disk / "media2").mkdir()
    (disk / "media2" / "b.mp3").write_bytes(b"x")
    assert "is outside" in forbidden(folders.media_file, str(disk / "media2" / "b.mp3"))


def test_a_missing_file_is_a_bad_request(folders: JobFolders, disk: Path) -> None:
    assert bad(folders.media_file, str(disk / "media" / "gone.mp3")).endswith("does not exist")


def test_a_missing_file_outside_is_forbidden_not_missing(folders: JobFolders, disk: Path) -> None:
    # The answer must not tell users which files exist outside the folders.
    forbidden(folders.media_file, str(disk / "secret" / "gone.txt"))


def test_a_folder_is_not_a_media_file(folders: JobFolders, disk: Path) -> None:
    (disk / "media" / "album").mkdir()
    assert "is not a file" in bad(folders.media_file, str(disk / "media" / "album"))


def test_a_relative_path_is_refused(folders: JobFolders) -> None:
    assert "must be an absolute path" in bad(folders.media_file, "media/a.mp3")
    assert "NUL" in bad(folders.media_file, "/media/a\0.mp3")


def test_the_output_folder_and_its_subfolders_are_writable_targets(folders: JobFolders, disk: Path) -> None:
    (disk / "out" / "batch1").mkdir()
    assert folders.output_dir(f"{disk}/out/") == (disk / "out").resolve()
    assert folders.output_dir(f"{disk}/out/batch1") == (disk / "out" / "batch1").resolve()


def test_outputs_outside_the_output_folders_are_forbidden(folders: JobFolders, disk: Path) -> None:
    assert "outside the folders the job API may write outputs to" in forbidden(folders.output_dir, "/etc")
    # Media folders are for reading only.
    assert "is outside" in forbidden(folders.output_dir, str(disk / "media"))
    assert "reaches through '..'" in forbidden(folders.output_dir, f"{disk}/out/../secret")
    (disk / "out" / "link").symlink_to(disk / "secret", target_is_directory=True)
    assert "symbolic link" in forbidden(folders.output_dir, str(disk / "out" / "link"))


def test_an_output_path_must_be_an_existing_folder(folders: JobFolders, disk: Path) -> None:
    assert "does not exist" in bad(folders.output_dir, str(disk / "out" / "new"))
    (disk / "out" / "file").write_text("")
    assert "is not a folder" in bad(folders.output_dir, str(disk / "out" / "file"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_output_path_must_be_writable(folders: JobFolders, disk: Path) -> None:
    locked = disk / "out" / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in bad(folders.output_dir, str(locked))


def test_a_configured_folder_may_itself_be_a_link(disk: Path) -> None:
    (disk / "data").symlink_to(disk / "media", target_is_directory=True)
    folders = JobFolders(media=[disk / "data"], outputs=[disk / "out"])
    assert folders.media_file(str(disk / "data" / "a.mp3")) == (disk / "media" / "a.mp3").resolve()
    assert folders.media_file(str(disk / "media" / "a.mp3")) == (disk / "media" / "a.mp3").resolve()


def test_configured_folders_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must be an absolute path"):
        JobFolders(media=["data/media"], outputs=["/data/out"])


def test_outputs_default_to_the_media_folder_when_it_is_an_output_folder(disk: Path) -> None:
    both = JobFolders(media=[disk / "media"], outputs=[disk / "out", disk / "media"])
    job = both.admit(Job(path=str(disk / "media" / "a.mp3"), output_path="", model="tiny.en"))
    assert job.output_path == str((disk / "media").resolve())


def test_outputs_default_to_the_first_output_folder_otherwise(folders: JobFolders, disk: Path) -> None:
    job = folders.admit(Job(path=str(disk / "media" / "a.mp3"), output_path="", model="tiny.en"))
    assert job.output_path == str((disk / "out").resolve())
    sent = folders.admit(Job(path=str(disk / "media" / "a.mp3"), output_path=f"{disk}/out/", model="tiny.en"))
    assert sent.output_path == f"{disk}/out/"


def test_the_job_api_is_off_without_folders(disk: Path) -> None:
    for off in (JobFolders(), JobFolders(media=[disk / "media"]), JobFolders(outputs=[disk / "out"])):
        assert not off.enabled
        with pytest.raises(Forbidden, match="the job API is off"):
            off.admit(Job(path=str(disk / "media" / "a.mp3"), output_path=str(disk / "out"), model="tiny.en"))


def test_a_submission_is_checked_whole(folders: JobFolders, disk: Path) -> None:
    def admit(body: dict[str, Any], **options: Any) -> Job:
        return admit_submission(body, folders=folders, default_model="tiny.en", model_exists={"tiny.en"}.__contains__, **options)

    job = admit(
        {"path": str(disk / "media" / "a.mp3"), "format": "all", "callback": "https://hooks.example.com/j"},
        callback_hosts=["hooks.example.com"],
    )
    assert (job.format, job.output_path) == ("all", str((disk / "out").resolve()))
    with pytest.raises(BadRequest, match="format must be one of"):
        admit({"path": "/etc/passwd", "format": "mp3"})
    with pytest.raises(Forbidden, match="outside the folders"):
        admit({"path": "/etc/passwd"})
    with pytest.raises(Forbidden, match="outside the folders"):
        admit({"path": str(disk / "media" / "a.mp3"), "output_path": "/tmp"})
    with pytest.raises(Forbidden, match="callback host 'evil.example.org'"):
        admit(
            {"path": str(disk / "media" / "a.mp3"), "callback": "http://evil.example.org/"}, callback_hosts=["hooks.example.com"]
        )
    with pytest.raises(Forbidden, match="the job API is off"):
        admit_submission({"path": str(disk / "media" / "a.mp3")}, folders=JobFolders(), default_model="tiny.en")
