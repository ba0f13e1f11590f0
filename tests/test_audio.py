"""Decoding media of any container to 16 kHz mono, and refusing what is not media."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from media import SAMPLE_WAV, claim_duration, transcode
from serve_app.audio import SAMPLE_RATE, decode_audio
from serve_app.errors import BadRequest, PayloadTooLarge, UnsupportedMedia


@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "video"),
    [(".mp3", "mp3", 16000, False), (".ogg", "libopus", 48000, False), (".flac", "flac", 16000, False),
     (".m4a", "aac", 44100, False), (".mp4", "aac", 16000, True), (".mkv", "libopus", 48000, True)],
)
def test_every_container_decodes_to_the_same_audio(tmp_path: Path, suffix: str, codec: str, rate: int, video: bool) -> None:
    reference = decode_audio(open(SAMPLE_WAV, "rb"))
    encoded = transcode(SAMPLE_WAV, tmp_path / f"sample{suffix}", codec=codec, rate=rate, video=video)
    audio = decode_audio(open(encoded, "rb"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(reference)) < 0.05 * SAMPLE_RATE
    # Lossy codecs change samples, not loudness: the energy stays close.
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(np.sqrt(np.mean(reference**2)), rel=0.15)


def test_a_file_cut_short_is_refused(tmp_path: Path) -> None:
    mp3 = transcode(SAMPLE_WAV, tmp_path / "sample.mp3", codec="mp3").read_bytes()
    with pytest.raises(BadRequest, match="cut short: its header declares 30.0 s"):
        decode_audio(io.BytesIO(mp3[: len(mp3) // 2]))


def test_media_over_the_duration_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="declares 0.5 minutes of audio, over the limit of 0.25 minutes"):
        decode_audio(open(SAMPLE_WAV, "rb"), max_seconds=15)
    assert len(decode_audio(open(SAMPLE_WAV, "rb"), max_seconds=60)) == 30 * SAMPLE_RATE


def test_a_header_claiming_hours_is_refused(tmp_path: Path) -> None:
    mp3 = transcode(SAMPLE_WAV, tmp_path / "sample.mp3", codec="mp3").read_bytes()
    claiming = claim_duration(mp3, hours=10)
    with pytest.raises(PayloadTooLarge, match="declares 600.0 minutes"):
        decode_audio(io.BytesIO(claiming), max_seconds=4 * 3600)
    with pytest.raises(BadRequest, match="cut short"):  # under the limit, the lie shows in what decodes
        decode_audio(io.BytesIO(claiming), max_seconds=24 * 3600)


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", BadRequest, "file is empty"),
        (b"PK\x03\x04" + bytes(range(256)) * 20, UnsupportedMedia, "not audio or video"),
        (b"RIFF\xff\xff\xff\x7fWAVEfmt " + b"\x00" * 64, UnsupportedMedia, ""),
    ],
)
def test_what_is_not_media_is_refused(data: bytes, error: type, reason: str) -> None:
    with pytest.raises(error) as refused:
        decode_audio(io.BytesIO(data))
    assert reason in refused.value.reason
