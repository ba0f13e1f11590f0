"""The files a finished job writes: one a format, named after the media file, each whole or absent.

For `/data/media/track.mp3` into `/data/out/`: `/data/out/track.txt`, `.vtt`, `.srt`, `.tsv`
and `.json`, and for a diarized transcript `.rttm` (the Diarizer's turns). Users on the shared disk may pick a file up the moment its name appears, so
every file is written under a hidden temporary name in the same folder, flushed to disk,
and renamed over its target (`os.replace` is atomic within a file system). With `all`,
the five are staged first and renamed only once all five are written, so a full disk or a
failing renderer leaves the targets as they were.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from serve_app.errors import ServiceError
from serve_app.formats import FORMATS, OUTPUT_FORMATS, SPEAKER_FORMATS
from serve_app.transcript import Transcript

__all__ = ["output_names", "write_outputs"]


def _written(extension: str, transcript: Transcript) -> str:
    write = FORMATS[extension].write
    assert write is not None, extension
    return write(transcript)


def output_names(
    media_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], job_format: str, *, diarized: bool = False
) -> list[Path]:
    """The files a job writes: the media file's name without its extension, in `output_dir`,
    with the extension of each format (`all`: every format, the SPEAKER_FORMATS too when the
    transcript is `diarized`, which a speaker format needs)."""
    known = (*OUTPUT_FORMATS, *SPEAKER_FORMATS) if diarized else OUTPUT_FORMATS
    formats = known if job_format == "all" else (job_format,)
    if not diarized and set(formats) & set(SPEAKER_FORMATS):
        raise ValueError(f"the job format {job_format!r} needs a diarized transcript")
    unknown = set(formats) - set(known)
    if unknown:
        raise ValueError(f"unknown job format {job_format!r}")
    stem = Path(media_path).stem
    return [Path(output_dir) / f"{stem}.{extension}" for extension in formats]


def _stage(target: Path, text: str) -> Path:
    """`text` written and flushed to disk under a hidden name beside `target`."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide who may read the file, as for any file the
    # service writes; mkstemp would make it private to the service's user.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable too. Best effort: some file systems cannot sync a folder,
    and the files are whole either way."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_outputs(
    transcript: Transcript, *, media_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], job_format: str
) -> list[Path]:
    """Write the job's outputs of `transcript` and return their paths, in OUTPUT_FORMATS order.

    `output_dir` must already have been checked (JobFolders.output_dir). A file that cannot
    be written raises ServiceError naming it; no temporary file is left behind, and no
    target is touched unless the failure is in the final renames (a target that is a folder).
    """
    targets = output_names(media_path, output_dir, job_format, diarized=transcript.turns is not None)
    staged: list[tuple[Path, Path]] = []
    try:
        for target in targets:
            try:
                staged.append((_stage(target, _written(target.suffix[1:], transcript)), target))
            except OSError as exc:
                raise ServiceError(f"could not write {target}: {exc.strerror or exc}") from exc
        for temporary, target in staged:
            try:
                os.replace(temporary, target)
            except OSError as exc:
                raise ServiceError(f"could not write {target}: {exc.strerror or exc}") from exc
    finally:
        for temporary, _target in staged:
            temporary.unlink(missing_ok=True)
    _fsync_dir(Path(output_dir))
    return targets
