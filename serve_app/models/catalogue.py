"""The models on disk: one folder a model under the model folder, found by id or alias.

A model folder holds the model's files and `whisper-serve.json` (id, kind, source, aliases,
created, install_id). A folder is only ever renamed into place once whole, so a listed model is complete;
a CTranslate2 Whisper folder an operator copies in by hand (model.bin + config.json) is listed
too, under its folder name. The disk is the truth: every look-up reads it, so several processes
(the ModelStore, a batch job) see the same catalogue.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from serve_app.models.embedded import EmbeddedModel

__all__ = ["METADATA_FILE", "ModelCatalogue", "ModelInfo", "is_multilingual"]

METADATA_FILE = "whisper-serve.json"
_SEEDED_FILE = ".seeded.json"
_PARTIAL_PREFIX = ".partial-"
MULTILINGUAL_VOCABULARY = 51865  # Whisper's own test: English-only models have 51864 tokens


def is_multilingual(folder: Path) -> bool:
    """Whether a CTranslate2 Whisper model folder holds a multilingual model."""
    if (folder / "vocabulary.txt").exists():
        with open(folder / "vocabulary.txt", "rb") as vocabulary:
            return sum(1 for _ in vocabulary) >= MULTILINGUAL_VOCABULARY
    if (folder / "vocabulary.json").exists():
        return len(json.loads((folder / "vocabulary.json").read_text())) >= MULTILINGUAL_VOCABULARY
    return True


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    path: str
    created: int
    kind: str = "transcription"
    source: str = "local"
    aliases: tuple[str, ...] = ()
    multilingual: bool = True
    size_bytes: int = 0
    install_id: str = ""
    """Tells this copy of the model from one placed under the same id before or after it: a
    random id given when the folder is placed (for a folder without one, such as one copied in
    by hand, the modification time of its metadata or its folder, in nanoseconds)."""

    @property
    def version(self) -> str:
        """The model's folder and install id, `tiny.en@3f2a...`: the name the Transcriber's and
        the Diarizer's replicas load a model by and Ray Serve routes requests on (the
        multiplexed model id). A model deleted and placed again gets another version, so that no
        replica answers for it with the weights it loaded before; `ModelCatalogue.at_version`
        finds it again."""
        return f"{Path(self.path).name}@{self.install_id}"

    def answers_to(self, name: str) -> bool:
        """Whether `name` is this model's id or one of its aliases, exactly: a name that differs
        in case or space is another name, so that no request reaches a model by accident."""
        return name == self.id or name in self.aliases

    def to_json(self) -> dict[str, Any]:
        """The model as the API shows it: `path` is its folder inside the model folder, so that
        the server's own folders are never shown to clients."""
        body = {"id": self.id, "object": "model"} | asdict(self)
        body["path"] = Path(self.path).name
        body["aliases"] = list(self.aliases)
        del body["install_id"]
        return body


def _folder_size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


class ModelCatalogue:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def models(self) -> list[ModelInfo]:
        found = (self._read(folder) for folder in sorted(self.root.iterdir()) if not folder.name.startswith("."))
        return [model for model in found if model is not None]

    def find(self, name: str) -> ModelInfo | None:
        return next((model for model in self.models() if model.answers_to(name)), None)

    def at_version(self, version: str) -> ModelInfo | None:
        """The model whose `version` this is, or None where its folder is gone or holds another
        model since (deleted, then placed again)."""
        name, _, install_id = version.rpartition("@")
        if not name or not install_id or name.startswith(".") or Path(name).name != name:
            return None
        try:
            model = self._read(self.root / name)
        except OSError:  # deleted while read
            return None
        return model if model is not None and model.version == version else None

    def _read(self, folder: Path) -> ModelInfo | None:
        metadata = folder / METADATA_FILE
        if metadata.is_file():
            fields = json.loads(metadata.read_text())
            fields["aliases"] = tuple(fields.get("aliases", ()))
            fields.setdefault("install_id", str(metadata.stat().st_mtime_ns))
            return ModelInfo(path=str(folder), **fields)
        if (folder / "model.bin").is_file() and (folder / "config.json").is_file():
            stat = folder.stat()
            return ModelInfo(
                id=folder.name,
                path=str(folder),
                created=int(stat.st_mtime),
                multilingual=is_multilingual(folder),
                size_bytes=_folder_size(folder),
                install_id=str(stat.st_mtime_ns),
            )
        return None

    def add(
        self,
        model_id: str,
        write: Callable[[Path], object],
        *,
        kind: str = "transcription",
        source: str = "local",
        aliases: Iterable[str] = (),
    ) -> ModelInfo:
        """Build a model in a hidden folder with `write(folder)`, then rename it into place.

        If `write` fails, nothing is left behind; if another process placed the same id first,
        its model wins and is returned.
        """
        partial = self.root / f"{_PARTIAL_PREFIX}{model_id}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
        try:
            write(partial)
            info = ModelInfo(
                id=model_id,
                path=str(self.root / model_id),
                created=int(time.time()),
                kind=kind,
                source=source,
                aliases=tuple(aliases),
                multilingual=kind != "transcription" or is_multilingual(partial),
                size_bytes=_folder_size(partial),
                install_id=uuid.uuid4().hex,
            )
            fields = {name: value for name, value in asdict(info).items() if name != "path"}
            (partial / METADATA_FILE).write_text(json.dumps(fields, indent=2))
            os.rename(partial, self.root / model_id)
        except OSError:
            if (self.root / model_id / METADATA_FILE).is_file():
                return self._read(self.root / model_id)  # type: ignore[return-value]
            raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return info

    def remove(self, model_id: str) -> None:
        """Take the model out of the listing at once (a rename), then delete its files."""
        doomed = self.root / f"{_PARTIAL_PREFIX}deleted-{model_id}-{uuid.uuid4().hex[:8]}"
        os.rename(self.root / model_id, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def seed(self, embedded: Iterable[EmbeddedModel], *, required: Collection[str] = ()) -> list[ModelInfo]:
        """Add each embedded model once; one a user deleted later is not brought back, unless
        `required` names it (the configured default models must be there to serve)."""
        seeded_file = self.root / _SEEDED_FILE
        seeded = set(json.loads(seeded_file.read_text())) if seeded_file.exists() else set()
        added = []
        for model in embedded:
            wanted = any(name == model.id or name in model.aliases for name in required)
            if self.find(model.id) or (model.id in seeded and not wanted):
                seeded.add(model.id)
                continue
            added.append(self.add(model.id, model.write_to, kind=model.kind, source=model.source, aliases=model.aliases))
            seeded.add(model.id)
        seeded_file.write_text(json.dumps(sorted(seeded)))
        return added

    def clean_partials(self) -> None:
        """Remove what a process that died mid-download or mid-delete left behind."""
        for folder in self.root.glob(f"{_PARTIAL_PREFIX}*"):
            shutil.rmtree(folder, ignore_errors=True)
