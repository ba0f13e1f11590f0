"""The typed `args` of the application: what `config.yaml` may set, validated before anything binds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AppSettings"]


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Path("~/.cache/whisper-serve/models")
    """Folder of the model catalogue: one sub-folder a model. On a cluster of several nodes
    it must be storage every node mounts at this path (NFS, EFS, a shared volume)."""

    embedded_models: bool = True
    """Seed the catalogue at start with the models that install from PyPI (tiny.en, and the
    multilingual base assembled from its two parts), so a fresh install works offline."""

    default_model: str = "tiny.en"
    """The model that `whisper-1` (the OpenAI SDK's model name) and jobs without a model use."""

    max_loaded_models: int = Field(default=2, ge=1)
    """Models each Transcriber replica keeps loaded; the least recently used goes first."""

    compute_type: str = "auto"
    """CTranslate2 compute type; `auto` is int8 on CPU and float16 on GPU."""

    beam_size: int = Field(default=5, ge=1, le=16)
    """Beam width of the decoder (faster-whisper's default)."""

    vad_filter: bool = False
    """Skip silence with faster-whisper's Silero VAD before decoding."""

    max_upload_mb: float = Field(default=200, gt=0)
    """Largest request body accepted, in MiB; larger ones get 413 before they are read."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when the replica was given a GPU (`num_gpus` in config.yaml), else CPU."""

    @field_validator("model_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
