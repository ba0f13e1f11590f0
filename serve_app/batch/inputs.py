"""The batch's inputs: the media files a folder, one file or a manifest names, each file's
language, and where its outputs go."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serve_app.jobs.outputs import output_names
from serve_app.languages import UnknownLanguage, normalise_language

__all__ = [
    "MEDIA_EXTENSIONS",
    "BatchError",
    "MediaFile",
    "find_media",
    "media_files",
    "plan_files",
    "read_manifest",
]

MEDIA_EXTENSIONS = (
    # audio
    ".aac .aif .aiff .amr .ape .au .flac .m4a .mka .mp2 .mp3 .oga .ogg .opus .ra .wav .wma .wv "
    # video
    ".3gp .avi .flv .m2ts .m4v .mkv .mov .mp4 .mpeg .mpg .mts .ogv .ts .vob .webm .wmv"
).split()
"""What a folder is searched for, case aside (--extensions replaces it)."""


class BatchError(Exception):
    """The batch cannot start: the message says what to change (exit status 2)."""


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One input file and where its outputs go."""

    path: Path
    """Absolute path of the media file."""
    folder: Path
    """The outputs' folder, relative to the output folder (`.` for the top)."""
    name: str
    """The name the outputs are named after: `a.mp3` writes `a.txt`, ..."""
    language: str | None = None
    """From the manifest, else the batch's --language; None: detected."""

    def outputs(self, output_dir: Path, job_format: str, *, diarized: bool = False) -> list[Path]:
        return output_names(self.name, output_dir / self.folder, job_format, diarized=diarized)


# -- languages: a manifest's column and --language -------------------------------------------


def _language(value: str | None, where: str) -> str | None:
    """A language code, None for detection; BatchError naming `where` for one Whisper lacks."""
    try:
        return normalise_language(value)
    except UnknownLanguage as exc:
        raise BatchError(f"{where}: {exc}") from None


# -- folders and manifests -------------------------------------------------------------------


def find_media(folder: Path, extensions: Iterable[str] = MEDIA_EXTENSIONS) -> list[tuple[Path, str | None]]:
    """The media files under `folder`, sorted, by extension (hidden files and folders left out)."""
    wanted = {extension.lower() for extension in extensions}
    found: list[tuple[Path, str | None]] = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append((Path(root, name), None))
    return found


def read_manifest(manifest: Path) -> list[tuple[Path, str | None]]:
    """The files a manifest lists, with their languages: CSV (a `path` column, optional
    `language`), JSONL (`{"path", "language"}` a line) or one path a line (`#` comments)."""
    try:
        return _read_manifest(manifest)
    except UnicodeDecodeError:
        raise BatchError(f"{manifest} is not a manifest (UTF-8 text) nor a file of a media extension") from None


def _read_manifest(manifest: Path) -> list[tuple[Path, str | None]]:
    base = manifest.parent
    entries: list[tuple[str, str | None]] = []
    with open(manifest, newline="", encoding="utf-8-sig") as lines:
        match manifest.suffix.lower():
            case ".csv":
                rows = csv.DictReader(lines)
                if "path" not in (rows.fieldnames or ()):
                    raise BatchError(f"{manifest}: a CSV manifest needs a header with a path column (and optionally language)")
                for number, row in enumerate(rows, 2):
                    if (row.get("path") or "").strip():
                        entries.append((row["path"].strip(), _language(row.get("language"), f"{manifest} line {number}")))
            case ".jsonl" | ".ndjson":
                for number, text in enumerate(lines, 1):
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as error:
                        raise BatchError(f"{manifest} line {number} is not JSON ({error.msg})") from None
                    if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"].strip():
                        raise BatchError(f'{manifest} line {number}: each line must be an object with a "path" string')
                    language = row.get("language")
                    if language is not None and not isinstance(language, str):
                        raise BatchError(f"{manifest} line {number}: language must be a string such as en")
                    entries.append((row["path"].strip(), _language(language, f"{manifest} line {number}")))
            case _:
                entries = [(text.strip(), None) for text in lines if text.strip() and not text.lstrip().startswith("#")]
    listed: dict[Path, str | None] = {}
    for path, language in entries:
        listed.setdefault(Path(os.path.normpath(base / os.path.expanduser(path))), language)
    return list(listed.items())


# -- where the outputs go --------------------------------------------------------------------


def plan_files(found: list[tuple[Path, str | None]], root: Path) -> list[MediaFile]:
    """Where each file's outputs go: its folder relative to `root`, named after the file (after
    its whole name where another file of that folder has the same stem)."""
    stems: dict[tuple[Path, str], int] = {}
    for path, _ in found:
        key = (path.parent, path.stem)
        stems[key] = stems.get(key, 0) + 1
    planned = []
    for path, language in found:
        name = path.name if stems[(path.parent, path.stem)] > 1 else path.stem
        # output_names names outputs after the stem of the name it is given.
        planned.append(MediaFile(path, path.parent.relative_to(root), f"{name}{path.suffix}", language))
    return planned


def media_files(media: Path, extensions: Iterable[str]) -> list[MediaFile]:
    """The files a folder or manifest names, with their outputs' places."""
    media = Path(os.path.abspath(media))
    if media.is_dir():
        return plan_files(find_media(media, extensions), media)
    if media.is_file() and media.suffix.lower() in extensions:
        return plan_files([(media, None)], media.parent)  # one media file
    if media.is_file():
        listed = read_manifest(media)
        if not listed:
            return []
        root = Path(os.path.commonpath([path.parent for path, _ in listed]))
        return plan_files(listed, root)
    raise BatchError(f"{media} does not exist: give a folder of media files or a manifest of their paths")
