"""Decode any media FFmpeg reads (through PyAV) to 16 kHz mono float32, the input of Whisper."""

from __future__ import annotations

from typing import BinaryIO

import av
import numpy as np

from .errors import BadRequest, PayloadTooLarge, UnsupportedMedia

__all__ = ["SAMPLE_RATE", "decode_audio"]

SAMPLE_RATE = 16_000
TRUNCATED_SHARE = 0.9
"""Less than this share of the declared duration decoding means the file was cut short."""


def _is_empty(source: BinaryIO) -> bool:
    position = source.tell()
    empty = not source.read(1)
    source.seek(position)
    return empty


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _too_long(seconds: float, max_seconds: float, *, declared: bool) -> PayloadTooLarge:
    what = "declares" if declared else "holds more than"
    return PayloadTooLarge(
        f"the media {what} {seconds / 60:.1f} minutes of audio, over the limit of {max_seconds / 60:g} minutes; "
        "cut it into shorter files"
    )


def decode_audio(source: BinaryIO, *, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """The best audio stream of `source` (a seekable binary file), resampled to mono float32.

    Raises BadRequest for an empty file, UnsupportedMedia for bytes FFmpeg cannot read or
    media without audio, and PayloadTooLarge for media over `max_seconds` (by its header, or
    once that much has decoded). A file cut short (less audio than its header declares)
    raises BadRequest: a transcript of half an upload is rarely what anyone wanted.
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
        declared = _declared_seconds(container, stream)
        if max_seconds is not None and declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds, declared=True)
        max_samples = None if max_seconds is None else int(max_seconds * sample_rate)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        decoded = 0
        try:
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray().reshape(-1))
                    decoded += chunks[-1].size
                if max_samples is not None and decoded > max_samples:
                    raise _too_long(decoded / sample_rate, max_seconds, declared=False)
        except av.FFmpegError as error:
            if not chunks:
                raise UnsupportedMedia(f"the audio stream cannot be decoded ({_why(error)})") from None
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not chunks:
        raise BadRequest("file has an audio stream but no audio in it")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    seconds = audio.size / sample_rate
    if declared is not None and seconds < TRUNCATED_SHARE * declared and declared - seconds > 1.0:
        raise BadRequest(
            f"the file is cut short: its header declares {declared:.1f} s of audio but only {seconds:.1f} s decode; "
            "send the whole file"
        )
    return audio
