"""pyannote's SpeakerDiarization, embedding every n-th chunk rather than every chunk.

pyannote slides its segmentation model over the audio in 10 s chunks, 1 s apart, and embeds
each (chunk, local speaker) pair: every second of speech goes through the speaker-embedding
model about ten times, which is most of a diarization's time on a CPU (CAM++: 85% of it).

`StridedSpeakerDiarization` embeds only every `embedding_stride`-th chunk (and the last one).
Each speaker of a chunk in between is matched to a speaker of the embedded chunk before or
after it (each of which shares at least 11 - stride seconds of its 10 with it, 8 s at stride
3), the one who speaks in the most of the same frames of the audio: that speaker's embedding
stands for theirs. A match must share at least half of the speaker's frames, and at least half
of the match's own frames in the audio the two chunks share; a speaker of an embedded chunk
stands for at most one speaker of each chunk. A speaker without a match is embedded as pyannote
would embed them. Clustering then gets an embedding for every (chunk, speaker) pair, as before,
and assigns each pair to a speaker as before.

Segmentation, clustering and reconstruction are pyannote's own. Each embedded chunk's audio is
cropped and turned into CAM++ features once, for all its speakers (pyannote computes them once
per pair). The frames each speaker is embedded from are pyannote's choice: the frames where
they speak alone, when there are enough of them (`embedding_exclude_overlap`), else all their
frames.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.core import SlidingWindowFeature

from serve_app.diarization.campplus import CAMPPlusEmbedding

__all__ = ["StridedSpeakerDiarization"]

_MIN_SHARE = 0.5  # of a speaker's frames that their match must share, and of the match's


class StridedSpeakerDiarization(SpeakerDiarization):
    """SpeakerDiarization with a CAM++ embedding (campplus.py), embedding every
    `embedding_stride`-th chunk (see the module's docstring). `embedding_stride=None` embeds
    every (chunk, speaker) pair by pyannote's own loop, as SpeakerDiarization does."""

    def __init__(self, *args: Any, embedding_stride: int | None = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self._embedding.model_, CAMPPlusEmbedding):
            raise TypeError(f"{type(self).__name__} embeds with CAM++, not {type(self._embedding.model_).__name__}")
        if embedding_stride is not None and embedding_stride < 1:
            raise ValueError(f"embedding_stride must be at least 1, not {embedding_stride}")
        self.embedding_stride = embedding_stride

    def get_embeddings(
        self,
        file: Any,
        binary_segmentations: SlidingWindowFeature,
        exclude_overlap: bool = False,
        hook: Any = None,
    ) -> np.ndarray:
        """(num_chunks, num_speakers, dimension) embeddings, NaN for a speaker silent in a chunk."""
        if self.embedding_stride is None or self.training:
            return super().get_embeddings(file, binary_segmentations, exclude_overlap=exclude_overlap, hook=hook)
        model: CAMPPlusEmbedding = self._embedding.model_
        chunks = binary_segmentations.sliding_window
        masks = np.nan_to_num(binary_segmentations.data, nan=0.0).astype(np.float32)
        num_chunks, _, num_speakers = masks.shape
        used = self._embedding_masks(masks, chunks.duration, exclude_overlap)
        active = masks.sum(axis=1) > 0  # (num_chunks, num_speakers)

        embedded = sorted({*range(0, num_chunks, self.embedding_stride), num_chunks - 1})
        todo: dict[int, list[int]] = {chunk: np.flatnonzero(active[chunk]).tolist() for chunk in embedded}
        borrowed: dict[tuple[int, int], tuple[int, int]] = {}
        frame_step = self._segmentation.model.receptive_field.step
        for before, after in zip(embedded, embedded[1:]):
            for chunk in range(before + 1, after):
                offsets = {
                    neighbour: round((chunks[neighbour].start - chunks[chunk].start) / frame_step)
                    for neighbour in (before, after)
                }
                matches = _matches(masks, chunk, offsets)
                borrowed.update(((chunk, speaker), match) for speaker, match in matches.items())
                if missing := [speaker for speaker in np.flatnonzero(active[chunk]).tolist() if speaker not in matches]:
                    todo[chunk] = missing

        embeddings = np.full((num_chunks, num_speakers, model.dimension), np.nan, dtype=np.float32)
        device = self._embedding.device
        if hook is not None:
            hook("embeddings", None, total=len(todo), completed=0)
        with torch.inference_mode():
            for completed, chunk in enumerate(sorted(todo), 1):
                if todo[chunk]:
                    waveform, _ = self._audio.crop(file, chunks[chunk], mode="pad")
                    features = model.fbank(waveform.to(device))
                    for speaker in todo[chunk]:
                        mask = torch.from_numpy(used[chunk, :, speaker]).to(device)
                        embeddings[chunk, speaker] = model.embed(features, mask).cpu().numpy()
                if hook is not None:
                    hook("embeddings", None, total=len(todo), completed=completed)
        for (chunk, speaker), (neighbour, match) in borrowed.items():
            embeddings[chunk, speaker] = embeddings[neighbour, match]
        return embeddings

    def _embedding_masks(self, masks: np.ndarray, duration: float, exclude_overlap: bool) -> np.ndarray:
        """The frames each (chunk, speaker) is embedded from, as pyannote's get_embeddings picks
        them: where they speak alone, if more than the embedding model's minimum; else all."""
        if not exclude_overlap:
            return masks
        num_frames = masks.shape[1]
        min_num_frames = math.ceil(num_frames * self._embedding.min_num_samples / (duration * self._embedding.sample_rate))
        clean = masks * (masks.sum(axis=2, keepdims=True) < 2)
        enough = clean.sum(axis=1, keepdims=True) > min_num_frames  # (num_chunks, 1, num_speakers)
        return np.where(enough, clean, masks)


def _matches(masks: np.ndarray, chunk: int, offsets: dict[int, int]) -> dict[int, tuple[int, int]]:
    """{local speaker of `chunk`: (neighbouring chunk, its local speaker) who speaks in the same
    frames}, for the speakers who have such a match; `offsets` are the neighbours' starts, in
    frames after the chunk's."""
    num_frames = masks.shape[1]
    frames = masks[chunk].sum(axis=0)  # each speaker's, in the chunk
    candidates = []
    for neighbour, offset in offsets.items():
        if abs(offset) >= num_frames:  # a stride longer than a chunk: nothing shared
            continue
        if offset >= 0:  # the chunk's frames [offset, end) are the neighbour's [0, end - offset)
            mine, theirs = masks[chunk, offset:], masks[neighbour, : num_frames - offset]
        else:
            mine, theirs = masks[chunk, : num_frames + offset], masks[neighbour, -offset:]
        shared = mine.T @ theirs  # (speaker, neighbour's speaker): frames both speak in
        theirs_there = theirs.sum(axis=0)
        for speaker, match in zip(*np.nonzero(shared)):
            if shared[speaker, match] >= _MIN_SHARE * max(frames[speaker], theirs_there[match]):
                candidates.append((float(shared[speaker, match]), int(speaker), neighbour, int(match)))
    matches: dict[int, tuple[int, int]] = {}
    for _, speaker, neighbour, match in sorted(candidates, reverse=True):
        if speaker not in matches and (neighbour, match) not in matches.values():
            matches[speaker] = (neighbour, match)
    return matches
