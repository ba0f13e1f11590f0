"""Which server files the job API may read and write: the folders the config names, and no others.

The job API takes paths on the server's disk from its users, so it is off until the config
names the folders it may read media from and the folders it may write outputs to. Every
path is resolved the way the kernel will open it (`os.path.realpath`: `..` and every
symbolic link followed) and must land inside one of those folders; one that lands outside
is Forbidden (403) whatever it looks like, and the reason says whether `..` or a symbolic
link took it there. Only a path that passes is looked at further, so that a 400 ("does not
exist") never tells a user what lies outside the folders.

A job is checked when it is submitted and must be checked again when it runs (the same
calls: `media_file`, `output_dir`), since a link inside a folder can change in between.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serve_app.errors import BadRequest, Forbidden
from serve_app.jobs.job import Job

__all__ = ["JOBS_OFF", "JobFolders"]


def _folders(folders: Iterable[str | os.PathLike[str]], kind: str) -> tuple[Path, ...]:
    resolved = []
    for folder in folders:
        if not os.path.isabs(folder):
            raise ValueError(f"job {kind} folder {os.fspath(folder)!r} must be an absolute path")
        resolved.append(Path(os.path.realpath(folder)))
    return tuple(resolved)


def _inside(path: str, folder: Path) -> bool:
    return os.path.commonpath([path, folder]) == str(folder)


JOBS_OFF = "the job API is off: name job_media_folders and job_output_folders in the app's args (config.yaml)"


@dataclass(frozen=True)
class JobFolders:
    """The folders the job API may read media from (`media`) and write outputs to (`outputs`).

    The folders themselves are resolved once, here, so a configured folder may be a link
    (`/data` -> `/mnt/disk1/data`). With either list empty the job API is off.

    When a job names no `output_path`, its outputs go beside the media file if that folder
    lies inside an output folder, else into the first output folder.
    """

    media: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()

    def __init__(self, media: Iterable[str | os.PathLike[str]] = (), outputs: Iterable[str | os.PathLike[str]] = ()) -> None:
        object.__setattr__(self, "media", _folders(media, "media"))
        object.__setattr__(self, "outputs", _folders(outputs, "output"))

    @property
    def enabled(self) -> bool:
        return bool(self.media and self.outputs)

    def require_enabled(self) -> None:
        if not self.enabled:
            raise Forbidden(JOBS_OFF)

    def media_file(self, path: str) -> Path:
        """The real path of a media file the job API may read; Forbidden outside the media
        folders, BadRequest when it does not exist, is not a regular file or cannot be read."""
        real = self._confine(path, self.media, field="path", what="the folders the job API may read media from")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise BadRequest(f"path {path!r} does not exist") from None
        except OSError as exc:
            raise BadRequest(f"path {path!r} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise BadRequest(f"path {path!r} is not a file: send the path of a media file")
        if not os.access(real, os.R_OK):
            raise BadRequest(f"path {path!r} cannot be read by the service: check its permissions")
        return Path(real)

    def output_dir(self, path: str) -> Path:
        """The real path of a folder the job API may write outputs to; Forbidden outside the
        output folders, BadRequest when it does not exist, is not a folder or is not writable."""
        real = self._confine(path, self.outputs, field="output_path", what="the folders the job API may write outputs to")
        if not os.path.exists(real):
            raise BadRequest(f"output_path {path!r} does not exist: create the folder first")
        if not os.path.isdir(real):
            raise BadRequest(f"output_path {path!r} is not a folder")
        if not os.access(real, os.W_OK | os.X_OK):
            raise BadRequest(f"output_path {path!r} is not writable by the service: check its permissions")
        return Path(real)

    def default_output(self, media_path: str) -> str:
        """Where a job's outputs go when it names no `output_path` (see the class docstring)."""
        folder = os.path.dirname(os.path.realpath(media_path))
        return folder if any(_inside(folder, out) for out in self.outputs) else str(self.outputs[0])

    def admit(self, job: Job) -> Job:
        """The job with its paths checked and its `output_path` filled in; raises as
        `media_file` and `output_dir` do, and Forbidden when the job API is off."""
        self.require_enabled()
        self.media_file(job.path)
        output_path = job.output_path or self.default_output(job.path)
        self.output_dir(output_path)
        return dataclasses.replace(job, output_path=output_path)

    @staticmethod
    def _confine(path: str, folders: tuple[Path, ...], *, field: str, what: str) -> str:
        if "\0" in path:
            raise BadRequest(f"{field} must not contain a NUL character")
        if not os.path.isabs(path):
            raise BadRequest(f"{field} must be an absolute path, not {path!r}")
        real = os.path.realpath(path)
        if any(_inside(real, folder) for folder in folders):
            return real
        allowed = ", ".join(map(str, folders))
        if any(_inside(os.path.normpath(path), folder) for folder in folders):
            how = "leads through a symbolic link outside"
        elif ".." in Path(path).parts:
            how = "reaches through '..' outside"
        else:
            how = "is outside"
        raise Forbidden(f"{field} {path!r} {how} {what} ({allowed})")
