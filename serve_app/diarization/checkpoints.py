"""pyannote models read without running their checkpoint's pickle, for repositories nobody trusts.

A pyannote checkpoint (`pytorch_model.bin`) is a Lightning pickle, and pyannote loads it with
`torch.load(weights_only=False)`: unpickling it runs whatever the file says, as the service's user.
`load_model` reads it with `weights_only=True` instead, which builds tensors, containers and the
few classes of SAFE_GLOBALS and refuses anything else, then builds the model only if the class
its checkpoint names is one of ARCHITECTURES (pyannote imports any module a checkpoint names).
What it refuses is Forbidden, with a reason that names the setting `trusted_model_repos`: the
operator's way to let pyannote load a repository its own way.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from pyannote.audio import Model
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.models.embedding import (
    WeSpeakerResNet34,
    WeSpeakerResNet152,
    WeSpeakerResNet221,
    WeSpeakerResNet293,
    XVectorMFCC,
    XVectorSincNet,
)
from pyannote.audio.models.segmentation import PyanNet
from torch.torch_version import TorchVersion

from serve_app.diarization.campplus import CAMPPlusEmbedding
from serve_app.errors import Forbidden, ServiceError

__all__ = ["ARCHITECTURES", "SAFE_GLOBALS", "load_model", "refusal", "trusts"]

SAFE_GLOBALS: list[Any] = [TorchVersion, Specifications, Problem, Resolution]
"""What pyannote's checkpoints hold besides tensors (segmentation-3.0 has exactly these): the
torch version that saved it, a str; the task's specifications, a dataclass of numbers, strings
and these two enums. None of them runs code when built."""

ARCHITECTURES: dict[str, type[Model]] = {
    f"{model.__module__}.{model.__name__}": model
    for model in (
        PyanNet,
        WeSpeakerResNet34,
        WeSpeakerResNet152,
        WeSpeakerResNet221,
        WeSpeakerResNet293,
        XVectorMFCC,
        XVectorSincNet,
        CAMPPlusEmbedding,
    )
}
"""The model classes a checkpoint may name (`module.Class`): pyannote's segmentation and speaker
embedding models, and the embedded pipeline's CAM++."""


def trusts(source: str, trusted_repos: Iterable[str]) -> bool:
    """Whether a catalogue `source` (`hub:org/name` or `hub:org/name@revision`) is a repository
    named in `trusted_repos`, at any revision; the hub's ids are case-insensitive."""
    if not source.startswith("hub:"):
        return False
    repo = source.removeprefix("hub:").split("@", 1)[0].casefold()
    return repo in {name.casefold() for name in trusted_repos}


def refusal(what: str, source: str) -> str:
    """The end of every refusal: what the operator can do about it."""
    repo = source.removeprefix("hub:").split("@", 1)[0] if source.startswith("hub:") else None
    if repo is None:
        return f"{what}; only pipelines downloaded from a repository named in the setting trusted_model_repos are unpickled"
    return f"{what}; if you trust the repository {repo}, add it to the setting trusted_model_repos"


def load_model(path: Path, *, source: str) -> Model:
    """The pyannote model of the checkpoint at `path`, in eval mode on the CPU, built without
    running its pickle; Forbidden where that cannot be done."""
    # Process-wide, and again at each load, rather than torch's `safe_globals` context: that one
    # adds to and then removes from one global set, so a load in another thread, or any other
    # code's context with these classes, would take the allowance away mid-load.
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    checkpoint = _read(path, source)
    architecture = _architecture(checkpoint)
    model_class = ARCHITECTURES.get(architecture or "")
    if model_class is None:
        raise Forbidden(
            refusal(f"{path} is a checkpoint of {architecture or 'no known class'}, not of a model class we load", source)
        )
    try:
        model = model_class.load_from_checkpoint(path, map_location="cpu", strict=True, weights_only=True)
    except RuntimeError as error:
        if "loss_func" not in str(error):
            raise
        # pyannote's own retry: models trained with a task-dependent loss keep its weights.
        model = model_class.load_from_checkpoint(path, map_location="cpu", strict=False, weights_only=True)
    model.eval()
    return model


def _read(path: Path, source: str) -> dict[str, Any]:
    if not path.is_file():
        raise ServiceError(f"{path} is missing: the pipeline names it as a model")
    try:
        # mmap: the tensors are mapped, not read; only the zip format (torch >= 1.6) has it.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:
        raise Forbidden(refusal(f"{path} cannot be read without running its pickle ({_why(error)})", source)) from error
    if not isinstance(checkpoint, dict):
        raise ServiceError(f"{path} is not a pyannote checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def _architecture(checkpoint: dict[str, Any]) -> str | None:
    try:
        architecture = checkpoint["pyannote.audio"]["architecture"]
        return f"{architecture['module']}.{architecture['class']}"
    except (KeyError, TypeError):
        return None


def _why(error: Exception) -> str:
    """torch's reason, without its advice to load the file with weights_only=False."""
    text = str(error)
    marker = "WeightsUnpickler error: "
    if marker in text:
        return text.split(marker, 1)[1].split("\n", 1)[0].split(". Please use", 1)[0].strip()
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
