"""Known speakers' reference recordings, as OpenAI's `known_speaker_references[]` sends them:
data URLs (`data:audio/wav;base64,...`) of 2 to 10 s of one voice, in any format the `file`
part takes. Decoded here, before any work is queued; every refusal is a BadRequest (or the
media errors of decode_audio) naming the reference by its place in the list.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np

from serve_app.diarization.known import MAX_KNOWN_SPEAKERS
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.errors import BadRequest, PayloadTooLarge, ServiceError
from serve_app.options import KnownSpeaker

__all__ = [
    "MAX_REFERENCE_BYTES",
    "MAX_REFERENCE_SECONDS",
    "MIN_REFERENCE_SECONDS",
    "decode_reference",
    "known_speakers",
]

MIN_REFERENCE_SECONDS = 2.0
MAX_REFERENCE_SECONDS = 10.0
TOLERANCE_SECONDS = 0.1
"""Encoders pad: a reference up to this much outside 2-10 s is taken."""
MAX_REFERENCE_BYTES = 4 * 1024 * 1024
"""The most bytes a reference's media may have, decoded from base64: 10 s of 48 kHz stereo
24-bit WAV is 2.9 MB."""
_DATA_URL = re.compile(
    r"data:(?P<type>[^,;]*)(?P<params>(?:;[^,;]*)*?)(?P<base64>;base64)?,(?P<data>.*)", re.DOTALL | re.IGNORECASE
)


def decode_reference(url: str, where: str) -> np.ndarray:
    """The samples (16 kHz mono float32) of one reference data URL; BadRequest naming `where`."""
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise BadRequest(f"{where} is not a data URL: send the recording as data:audio/wav;base64,...")
    if not match["base64"]:
        raise BadRequest(f"{where} is not base64: send the recording as data:<media type>;base64,<bytes>")
    data = re.sub(r"\s+", "", match["data"])
    if len(data) > (MAX_REFERENCE_BYTES * 4) // 3 + 4:
        raise BadRequest(f"{where} is over {MAX_REFERENCE_BYTES // (1024 * 1024)} MiB: send 2 to 10 s of one voice")
    try:
        media = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} has bytes that are not valid base64") from None
    try:
        audio = decode_audio(io.BytesIO(media), max_seconds=MAX_REFERENCE_SECONDS + TOLERANCE_SECONDS)
    except PayloadTooLarge:
        raise BadRequest(f"{where} is over {MAX_REFERENCE_SECONDS:g} s long: send 2 to 10 s of the speaker's voice") from None
    except ServiceError as error:
        raise BadRequest(f"{where} cannot be used: {error.reason}") from None
    seconds = audio.size / SAMPLE_RATE
    if not MIN_REFERENCE_SECONDS - TOLERANCE_SECONDS <= seconds <= MAX_REFERENCE_SECONDS + TOLERANCE_SECONDS:
        raise BadRequest(f"{where} is {seconds:.1f} s long: send 2 to 10 s of the speaker's voice")
    return audio


def known_speakers(names: list[str], references: list[str]) -> tuple[KnownSpeaker, ...]:
    """The known speakers of a request, their references decoded (the form checked the lists)."""
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise BadRequest(f"at most {MAX_KNOWN_SPEAKERS} known speakers can be sent, not {len(names)}")
    return tuple(
        KnownSpeaker(name, decode_reference(url, f"known_speaker_references[{index}] ({name})"))
        for index, (name, url) in enumerate(zip(names, references, strict=True))
    )
