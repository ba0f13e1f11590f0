"""How a model is named: ids, aliases and the names users send for them. Pure string rules."""

from __future__ import annotations

import posixpath
import re

__all__ = ["WHISPER_1", "is_folder_safe", "model_id_for_file", "model_id_for_repo"]

WHISPER_1 = "whisper-1"
"""The model name the OpenAI SDK sends; it stands for the app's `openai_model_alias`."""

_OUTSIDE_ID_CHARS = re.compile(r"[^a-z0-9.-]")
_FOLDER_SAFE_ID = re.compile(r"[a-z0-9_-][a-z0-9._-]*")


def model_id_for_file(name: str) -> str:
    """go-whisper's rule: the base name, lower-cased, extension removed, every character
    outside `[a-z0-9.-]` replaced by `_` (`ggml-medium-q5_0.bin` -> `ggml-medium-q5_0`)."""
    stem, _extension = posixpath.splitext(posixpath.basename(name.replace("\\", "/")))
    return _OUTSIDE_ID_CHARS.sub("_", stem.lower())


def model_id_for_repo(repo_id: str, revision: str | None = None) -> str:
    """A hub repository's id: its name (the part after the owner) under go-whisper's character
    rule, with the revision after `@` when one was asked for. No extension is cut: repository
    names such as `distil-large-v3.5` keep their dots."""
    name = _OUTSIDE_ID_CHARS.sub("_", repo_id.rsplit("/", 1)[-1].lower())
    return f"{name}_{_OUTSIDE_ID_CHARS.sub('_', revision.lower())}" if revision else name


def is_folder_safe(model_id: str) -> bool:
    """Whether an id can name a model's folder: one path part, not hidden (the catalogue skips
    dot folders and keeps its partial downloads there), only characters the id rules produce."""
    return _FOLDER_SAFE_ID.fullmatch(model_id) is not None
