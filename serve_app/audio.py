"""Decode any media FFmpeg reads (through PyAV) to 16 kHz mono float32, the input of Whisper."""

from __future__ import annotations

from typing import BinaryIO

import av
import numpy as np

from .errors import BadRequest, UnsupportedMedia

__all__ = ["SAMPLE_RATE", "decode_audio"]

SAMPLE_RATE = 16_000


def _is_empty(source: BinaryIO) -> bool:
    position = source.tell()
    empty = not source.read(1)
    source.seek(position)
    return empty


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def decode_audio(source: BinaryIO, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The best audio stream of `source` (a seekable binary file), resampled to mono float32.

    Raises BadRequest for an empty file and UnsupportedMedia for bytes FFmpeg cannot read or
    media without audio. A file truncated part way decodes up to where it breaks.
    """
    if _is_empty(source):
        raise BadRequest("file is empty: send the bytes of an audio or video file")
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise UnsupportedMedia(f"file is not audio or video that FFmpeg can decode ({_why(error)})") from None
    with container:
        stream = container.streams.best("audio")
        if stream is None:
            raise UnsupportedMedia("file has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        except av.FFmpegError as error:
            if not chunks:
                raise UnsupportedMedia(f"the audio stream cannot be decoded ({_why(error)})") from None
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not chunks:
        raise BadRequest("file has an audio stream but no audio in it")
    return np.concatenate(chunks).astype(np.float32, copy=False)
