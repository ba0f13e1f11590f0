"""Decode audio and video (through PyAV) to 16 kHz mono float32, the input of Whisper."""

from __future__ import annotations

import errno
from typing import BinaryIO

import av
import numpy as np

from .errors import BadRequest, PayloadTooLarge, UnsupportedMedia

__all__ = ["MEDIA_DEMUXERS", "SAMPLE_RATE", "decode_audio", "open_media"]

SAMPLE_RATE = 16_000
TRUNCATED_SHARE = 0.9
"""Less than this share of the declared duration decoding means the file was cut short."""

MEDIA_DEMUXERS = (
    "wav", "w64", "aiff", "au", "caf",              # PCM with a header
    "mp3", "aac", "ac3", "eac3", "dts", "amr",      # bare codec streams (aac: ADTS)
    "flac", "ogg", "wv", "ape", "tta",              # ogg: Opus, Vorbis, Speex, FLAC
    "matroska", "webm", "mov", "mp4", "m4a", "3gp",  # FFmpeg's matroska and mov demuxers
    "asf", "avi", "flv", "mpegts", "mpeg",          # asf: WMA/WMV; mpeg: program streams, VOB
)
"""The FFmpeg demuxers (`ffmpeg -demuxers` names) an upload may be read by: what FFmpeg
probes any other format as is refused with 415 before its header is read. Each of these reads
the one file it is given. To accept another format, add its demuxer's name once you have
checked in FFmpeg's libavformat that it opens no other file or URL (as concat, hls, dash,
image2, tee and the subtitle and device demuxers do)."""

_OPEN_OPTIONS = {
    "format_whitelist": ",".join(MEDIA_DEMUXERS),
    # The upload is read through Python, never through an FFmpeg protocol; naming none
    # refuses any other file or URL a demuxer might try to open.
    "protocol_whitelist": "none",
}

_REFUSED_FORMAT = (
    "file is not audio or video in a format this service reads (such as WAV, MP3, FLAC, Ogg, "
    "WebM, MP4, M4A); playlists, concat lists, image sequences and subtitles are refused"
)


def open_media(source: BinaryIO) -> av.container.InputContainer:
    """`source` (a binary file object) opened by one of MEDIA_DEMUXERS, and only by one of them.

    Raises UnsupportedMedia for any other format and for bytes FFmpeg cannot read."""
    try:
        return av.open(source, mode="r", metadata_errors="ignore", container_options=_OPEN_OPTIONS)
    except av.FFmpegError as error:
        if error.errno == errno.EINVAL:
            raise UnsupportedMedia(_REFUSED_FORMAT) from None
        raise UnsupportedMedia(f"file is not audio or video that FFmpeg can decode ({_why(error)})") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise UnsupportedMedia(f"file is not audio or video that FFmpeg can decode ({_why(error)})") from None


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

    Raises BadRequest for an empty file, UnsupportedMedia for a format outside MEDIA_DEMUXERS,
    bytes FFmpeg cannot read or media without audio, and PayloadTooLarge for media over
    `max_seconds` (by its header, or once that much has decoded). A file cut short (less
    audio than its header declares) raises BadRequest: a transcript of half an upload is
    rarely what anyone wanted.
    """
    if _is_empty(source):
        raise BadRequest("file is empty: send the bytes of an audio or video file")
    with open_media(source) as container:
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
