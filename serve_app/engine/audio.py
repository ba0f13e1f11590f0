"""Decode audio and video (through PyAV) to 16 kHz mono float32, the input of Whisper."""

from __future__ import annotations

import errno
from typing import BinaryIO, cast

import av
import numpy as np

from serve_app.engine.lengths import Declared, declared_by_sizes, mp3_counts_frames, ogg_is_finished
from serve_app.errors import BadRequest, PayloadTooLarge, UnsupportedMedia

__all__ = ["MEDIA_DEMUXERS", "SAMPLE_RATE", "decode_audio", "open_media"]

SAMPLE_RATE = 16_000
TRUNCATED_SHARE = 0.9
"""Less than this share of the declared duration decoding (and a second or more missing)
means the file was cut short."""
NO_LENGTH_IN_HEADER = ("aac", "ac3", "eac3", "dts", "amr")
"""Demuxers of bare codec streams, whose header declares no length: FFmpeg estimates one from
the first frames' bit rate and the file's size, which a stream of variable bit rate (AAC in
ADTS) does not keep to. An MP3 declares its length only in a Xing, Info or VBRI header."""

MEDIA_DEMUXERS = (
    "wav",
    "w64",
    "aiff",
    "au",
    "caf",  # PCM with a header
    "mp3",
    "aac",
    "ac3",
    "eac3",
    "dts",
    "amr",  # bare codec streams (aac: ADTS)
    "flac",
    "ogg",
    "wv",
    "ape",
    "tta",  # ogg: Opus, Vorbis, Speex, FLAC
    "matroska",
    "webm",
    "mov",
    "mp4",
    "m4a",
    "3gp",  # FFmpeg's matroska and mov demuxers
    "asf",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "rm",  # asf: WMA/WMV; mpeg: program streams, VOB
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

_FIRST_SAMPLES = 2**20
"""The buffer's first size (65 s at 16 kHz): under 4 MiB, which numpy does not madvise for huge
pages, so that realloc can grow it by mremap (it cannot move a mapping that madvise split)."""
_GROWTH, _GROWTH_AT_MOST = 1.25, 2**21
"""A full buffer grows by this factor, by this many samples (8 MiB) at most. Numpy zero-fills
what a resize adds, holding the GIL, and so makes it resident: the step past the audio's end
costs memory, and a long step stalls the process's other threads."""


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


class _Samples:
    """Resampled frames appended into one float32 buffer that grows as it fills, up to
    `max_seconds`: decoding holds about the memory of its output, once."""

    def __init__(self, *, sample_rate: int, max_seconds: float | None) -> None:
        self.max_seconds = max_seconds
        self.limit = None if max_seconds is None else int(max_seconds * sample_rate)
        self.buffer = np.empty(_FIRST_SAMPLES if self.limit is None else min(_FIRST_SAMPLES, self.limit), dtype=np.float32)
        self.size = 0

    def extend(self, frames: list[av.AudioFrame]) -> None:
        """Appends `frames`; past the limit, lets the buffer go and raises PayloadTooLarge."""
        for frame in frames:
            end = self.size + frame.samples
            if self.limit is not None and end > self.limit:
                assert self.max_seconds is not None  # the limit is set from it
                self._let_go()
                raise _too_long(self.max_seconds, self.max_seconds, declared=False)
            if end > self.buffer.size:
                grown = max(end, min(int(_GROWTH * self.buffer.size), self.buffer.size + _GROWTH_AT_MOST))
                # realloc: a large buffer is mmap'ed and grows by mremap, without a copy.
                self.buffer.resize(grown if self.limit is None else min(grown, self.limit), refcheck=False)
            # An AudioPlane has the buffer protocol; numpy's stubs before Python 3.12 take only bytes,
            # arrays and the like (3.12's collections.abc.Buffer would take it).
            self.buffer[self.size : end] = np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples)  # type: ignore[call-overload]
            self.size = end

    def _let_go(self) -> None:
        """Frees the buffer now (a traceback would keep it), 64 MiB a step: one munmap of a
        large buffer holds the GIL for tens of milliseconds."""
        while self.buffer.size > 1:
            self.buffer.resize(max(1, self.buffer.size - 8 * _GROWTH_AT_MOST), refcheck=False)

    def take(self) -> np.ndarray:
        """The samples, in the buffer shrunk to their length (in place)."""
        buffer, self.buffer = self.buffer, np.empty(0, dtype=np.float32)
        buffer.resize(self.size, refcheck=False)
        return buffer


def _is_empty(source: BinaryIO) -> bool:
    position = source.tell()
    empty = not source.read(1)
    source.seek(position)
    return empty


def _declared_seconds(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, *, frames_counted: bool
) -> float | None:
    """The length the media's header declares (None: it declares none, and FFmpeg's estimate
    from the bit rate is no declaration)."""
    if container.format.name in NO_LENGTH_IN_HEADER or (container.format.name == "mp3" and not frames_counted):
        return None
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
    `max_seconds` (by its header, or as soon as that much has decoded: decoding holds at most
    `max_seconds` of samples). A file cut short (less audio than its header declares, by
    FFmpeg or by the container's sizes: serve_app/engine/lengths.py; an Ogg stream without its
    last page) raises BadRequest: a transcript of half an upload is rarely what anyone wanted.
    Bare codec streams (ADTS AAC, AC-3, AMR; an MP3 without a Xing or VBRI header) declare no
    length, so nothing tells them cut short.
    """
    if _is_empty(source):
        raise BadRequest("file is empty: send the bytes of an audio or video file")
    # The container's own sizes, read before FFmpeg moves the file's position.
    sizes = declared_by_sizes(source)
    magic = _peek(source, 4)
    ogg_finished = ogg_is_finished(source) if magic == b"OggS" else True
    frames_counted = mp3_counts_frames(source)
    try:
        container = open_media(source)
    except UnsupportedMedia:
        if sizes is not None and sizes.container == "mp4" and sizes.cut:
            # An MP4 whose index (moov) comes after its media: cut short, FFmpeg cannot open it.
            raise BadRequest(_cut_short_bytes(sizes)) from None
        raise
    with container:
        # PyAV types best() as any Stream; best("audio") is an audio stream or None.
        stream = cast("av.audio.stream.AudioStream | None", container.streams.best("audio"))
        if stream is None:
            raise UnsupportedMedia("file has no audio stream")
        declared = _declared_seconds(container, stream, frames_counted=frames_counted)
        if max_seconds is not None and declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds, declared=True)
        samples = _Samples(sample_rate=sample_rate, max_seconds=max_seconds)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                samples.extend(resampler.resample(frame))
        except av.FFmpegError as error:
            if not samples.size:
                raise UnsupportedMedia(f"the audio stream cannot be decoded ({_why(error)})") from None
        samples.extend(resampler.resample(None))
    if not samples.size:
        raise BadRequest("file has an audio stream but no audio in it")
    audio = samples.take()
    seconds = audio.size / sample_rate
    if sizes is not None and sizes.seconds is not None:
        # A WAV's or CAF's data chunk: FFmpeg takes their length from the bytes that are there.
        declared = max(declared or 0.0, sizes.seconds)
    if declared is not None and _short(seconds, declared):
        raise BadRequest(
            f"the file is cut short: its header declares {declared:.1f} s of audio but only {seconds:.1f} s decode; "
            "send the whole file"
        )
    if sizes is not None and sizes.container == "avi" and sizes.cut and _short(seconds, seconds * sizes.declared / sizes.present):
        # FFmpeg takes an AVI's length from the index it finds; its RIFF chunks' sizes tell
        # how much of it there was (the audio in proportion).
        raise BadRequest(_cut_short_bytes(sizes))
    if not ogg_finished:
        raise BadRequest(
            f"the file is cut short: its Ogg stream ends without its last page ({seconds:.1f} s decode); send the whole file"
        )
    return audio


def _short(seconds: float, declared: float) -> bool:
    return seconds < TRUNCATED_SHARE * declared and declared - seconds > 1.0


def _cut_short_bytes(sizes: Declared) -> str:
    return f"the file is cut short: {sizes.what} {sizes.declared:,} bytes but it holds {sizes.present:,}; send the whole file"


def _peek(source: BinaryIO, count: int) -> bytes:
    position = source.tell()
    head = source.read(count)
    source.seek(position)
    return head
