"""What a media file's own bytes say of its length, where FFmpeg does not tell: the sizes in a
RIFF (WAV, AVI), RF64, Wave64, CAF or ISO BMFF (MP4, M4A, MOV, 3GP) header against the bytes
the file holds, whether an Ogg stream ends with its last page, and whether an MP3 has a header
that counts its frames. serve_app/engine/audio.py refuses a file cut short by them.

FFmpeg takes the length of a WAV, a Wave64 or a CAF from the bytes that are there (a WAV whose
header says 30 s but which holds 1.5 s reads as 1.5 s), an AVI's from the index it finds, an
Ogg's from its last page, and cannot open an MP4 cut before its index (`moov`) at all. The
readers here look at headers only, seeking past the data: a few reads of a few bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["Declared", "declared_by_sizes", "mp3_counts_frames", "ogg_is_finished"]

_UNSET_FROM = 0x7FFF0000
"""RIFF and data sizes from here up (and 0) are what writers that stream leave in place of the
size they cannot go back to write (0xFFFFFFFF, arecord's 0x7FFFFFFF): nothing declared."""
_MOST_CHUNKS = 100_000
"""Chunks or boxes read before giving up: a fragmented MP4 of hours has thousands."""
_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_ISO_FIRST_BOXES = (b"ftyp", b"styp", b"moov", b"mdat", b"wide", b"free", b"skip")
_OGG_PAGE = 65_307
"""The most bytes an Ogg page holds: 27 of header, 255 lacing values, 255 segments of 255."""


@dataclass(frozen=True, slots=True)
class Declared:
    """The bytes a header declares (of the audio data, or of the whole file) and those present."""

    container: str
    """wav (RIFF, RF64, Wave64), avi (any other RIFF), caf or mp4 (ISO BMFF)."""
    what: str
    """The header's part that declares the size, and the verb: "its data chunk declares"."""
    declared: int
    present: int
    seconds: float | None = None
    """The seconds the header declares, where it tells them (PCM: data bytes over bytes a second)."""

    @property
    def cut(self) -> bool:
        return self.present < self.declared


class _Reader:
    """Reads at offsets from where the upload starts, leaving its position as it found it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.begin = source.tell()
        self.size = source.seek(0, 2) - self.begin

    def read(self, offset: int, count: int) -> bytes:
        if offset < 0 or offset >= self.size:
            return b""
        self.source.seek(self.begin + offset)
        return self.source.read(count)

    def restore(self) -> None:
        self.source.seek(self.begin)


def declared_by_sizes(source: BinaryIO) -> Declared | None:
    """The sizes a RIFF (WAV, AVI), RF64, Wave64, CAF or ISO BMFF file's header declares against
    the bytes it holds; None for other files, or where the header leaves its size unset."""
    reader = _Reader(source)
    try:
        head = reader.read(0, 16)
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
            return _wave(reader)
        if head[:4] == b"RIFF":
            return _riff(reader)
        if head == _W64_RIFF:
            return _wave64(reader)
        if head[:4] == b"caff":
            return _caf(reader)
        if head[4:8] in _ISO_FIRST_BOXES:
            return _iso(reader)
        return None
    finally:
        reader.restore()


def _byte_rate(fmt: bytes) -> int:
    """A WAVEFORMATEX's average bytes a second (0: not known)."""
    return struct.unpack_from("<I", fmt, 8)[0] if len(fmt) >= 12 else 0


def _wave(reader: _Reader) -> Declared | None:
    """The data chunk's size against the bytes after its header; its seconds by the format's
    bytes a second."""
    offset, byte_rate, data64 = 12, 0, None
    for _ in range(_MOST_CHUNKS):
        header = reader.read(offset, 8)
        if len(header) < 8:
            return None
        kind, size = header[:4], struct.unpack_from("<I", header, 4)[0]
        if kind == b"fmt ":
            byte_rate = _byte_rate(reader.read(offset + 8, 16))
        elif kind == b"ds64":
            body = reader.read(offset + 8, 16)
            data64 = struct.unpack_from("<Q", body, 8)[0] if len(body) == 16 else None
        elif kind == b"data":
            if size == 0xFFFFFFFF and data64 is not None:
                size = data64
            elif size == 0 or size >= _UNSET_FROM:
                return None
            present = min(size, reader.size - (offset + 8))
            return Declared("wav", "its data chunk declares", size, present, size / byte_rate if byte_rate else None)
        offset += 8 + size + (size & 1)
    return None


def _riff(reader: _Reader) -> Declared | None:
    """A RIFF file of another form (AVI, with its OpenDML AVIX parts): the RIFF chunks' sizes."""
    offset = 0
    for _ in range(_MOST_CHUNKS):
        header = reader.read(offset, 8)
        if len(header) < 8 or header[:4] != b"RIFF":
            break
        size = struct.unpack_from("<I", header, 4)[0]
        if size == 0 or size >= _UNSET_FROM:
            return None
        offset += 8 + size + (size & 1)
    return Declared("avi", "its RIFF chunks declare", offset, reader.size) if offset else None


def _wave64(reader: _Reader) -> Declared | None:
    """Sony Wave64: GUID-named chunks with 64-bit sizes that count their 24-byte headers."""
    offset, byte_rate = 40, 0
    for _ in range(_MOST_CHUNKS):
        header = reader.read(offset, 24)
        if len(header) < 24:
            return None
        kind, size = header[:4], struct.unpack_from("<Q", header, 16)[0]
        if size < 24:
            return None
        if kind == b"fmt ":
            byte_rate = _byte_rate(reader.read(offset + 24, 16))
        elif kind == b"data":
            data = size - 24
            present = min(data, reader.size - (offset + 24))
            return Declared("wav", "its data chunk declares", data, present, data / byte_rate if byte_rate else None)
        offset += (size + 7) // 8 * 8
    return None


def _caf(reader: _Reader) -> Declared | None:
    """Apple CAF: its data chunk's size (-1: up to the end, nothing declared); its seconds where
    the format has packets of a fixed size (PCM)."""
    offset, byte_rate = 8, 0.0
    for _ in range(_MOST_CHUNKS):
        header = reader.read(offset, 12)
        if len(header) < 12:
            return None
        kind, size = header[:4], struct.unpack_from(">q", header, 4)[0]
        if kind == b"desc":
            desc = reader.read(offset + 12, 32)
            if len(desc) == 32:
                rate, _, _, packet_bytes, packet_frames = struct.unpack_from(">d4sIII", desc)
                byte_rate = packet_bytes * rate / packet_frames if packet_bytes and packet_frames else 0.0
        elif kind == b"data":
            if size < 4:
                return None
            audio = size - 4  # after the edit count
            present = max(0, min(audio, reader.size - (offset + 16)))
            return Declared("caf", "its data chunk declares", audio, present, audio / byte_rate if byte_rate else None)
        if size < 0:
            return None
        offset += 12 + size
    return None


def _iso(reader: _Reader) -> Declared | None:
    """ISO BMFF: the top-level boxes' sizes, the last of them ending past the file's end when it
    was cut (a box of size 0 runs to the end: nothing declared)."""
    offset = 0
    for _ in range(_MOST_CHUNKS):
        if offset >= reader.size:
            break
        header = reader.read(offset, 16)
        if len(header) < 8:
            break
        size = struct.unpack_from(">I", header)[0]
        if size == 1:
            if len(header) < 16:
                break
            size = struct.unpack_from(">Q", header, 8)[0]
        elif size == 0:
            return None
        if size < 8:
            return None
        offset += size
    else:
        return None
    return Declared("mp4", "its boxes declare", offset, reader.size) if offset else None


def ogg_is_finished(source: BinaryIO) -> bool:
    """Whether the Ogg file's last whole page ends a stream (has its end-of-stream flag): the
    last page of a file cut short does not, and a page cut in two is not whole."""
    reader = _Reader(source)
    try:
        tail = reader.read(max(0, reader.size - 2 * _OGG_PAGE), 2 * _OGG_PAGE)
        at = len(tail)
        while (at := tail.rfind(b"OggS\x00", 0, at)) >= 0:
            segments = tail[at + 26] if len(tail) > at + 26 else 0
            lacing = tail[at + 27 : at + 27 + segments]
            if len(tail) > at + 26 and len(lacing) == segments and at + 27 + segments + sum(lacing) <= len(tail):
                return bool(tail[at + 5] & 0x04)
        return False
    finally:
        reader.restore()


def mp3_counts_frames(source: BinaryIO) -> bool:
    """Whether the MP3 has a Xing, Info or VBRI header (after its ID3v2 tag): the frame count
    FFmpeg takes its length from. Without one, FFmpeg estimates the length from the first
    frame's bit rate, which a file of variable bit rate does not keep to."""
    reader = _Reader(source)
    try:
        offset = 0
        head = reader.read(0, 10)
        if head[:3] == b"ID3" and len(head) == 10:
            size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
            offset = 10 + size + (10 if head[5] & 0x10 else 0)
        first = reader.read(offset, 4096)
        return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))
    finally:
        reader.restore()
