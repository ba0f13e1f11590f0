"""Real test audio: the pyannote sample call, espeak-ng speech, and PyAV re-encodings of them."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from serve_app.engine.audio import open_media

# Found without importing pyannote.audio (and torch), which unit tests do not need.
SAMPLE_DIR = Path(importlib.util.find_spec("pyannote.audio").submodule_search_locations[0]) / "sample"
SAMPLE_WAV = SAMPLE_DIR / "sample.wav"
SAMPLE_STM = SAMPLE_DIR / "sample.stm"
SAMPLE_RTTM = SAMPLE_DIR / "sample.rttm"


def reference_words() -> str:
    """The words said in the sample call, from its STM transcript."""
    lines = SAMPLE_STM.read_text().splitlines()
    return " ".join(line.split(maxsplit=5)[5] for line in lines if line.strip())


def speak(text: str, path: Path, *, voice: str = "en", speed: int = 150) -> Path:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed: run scripts/test, or apt-get install espeak-ng")
    subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def _frames(path: Path):
    with open(path, "rb") as media, open_media(media) as source:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for frame in source.decode(audio=0):
            yield from resampler.resample(frame)


def transcode(source: Path, target: Path, *, codec: str, rate: int = 16000, video: bool = False) -> Path:
    """Re-encode `source`'s audio with `codec` into `target` (container from its suffix),
    with a small black video track first when `video` is set."""
    with av.open(str(target), "w") as out:
        picture = None
        if video:
            picture = out.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=rate)
        sound.layout = "mono"
        fmt = sound.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        seconds = 0.0
        for frame in _frames(source):
            for converted in resampler.resample(frame):
                out.mux(sound.encode(converted))
            seconds += frame.samples / 16000
        for converted in resampler.resample(None):
            out.mux(sound.encode(converted))
        out.mux(sound.encode(None))
        if picture is not None:
            black = np.zeros((48, 64, 3), dtype=np.uint8)
            for index in range(int(seconds * 10)):
                image = av.VideoFrame.from_ndarray(black, format="rgb24")
                image.pts, image.time_base = index, Fraction(1, 10)
                out.mux(picture.encode(image))
            out.mux(picture.encode(None))
    return target


def _sample_call() -> np.ndarray:
    """The sample call as 16 kHz mono int16."""
    return np.concatenate([frame.to_ndarray()[0] for frame in _frames(SAMPLE_WAV)])


def _long_layout(seconds: float, call: int) -> list[tuple[int, int]]:
    """(call, silence) lengths in samples of `long_recording`'s `seconds`, in order."""
    gaps = np.random.default_rng(0)
    layout, written, total = [], 0, int(seconds * 16000)
    while written < total:
        layout.append((call, int(gaps.uniform(2, 15) * 16000)))
        written += sum(layout[-1])
    return layout


def long_recording(path: Path, seconds: float, *, codec: str = "libopus", bit_rate: int = 24_000) -> Path:
    """`seconds` of real speech and silence, encoded with `codec` into `path` (container from its
    suffix): the sample call over and over, 2 to 15 s of silence between two calls (the same
    lengths every time). Opus at 24 kbit/s: 20 minutes in 3.6 MB, made in a few seconds."""
    call = _sample_call()
    total = int(seconds * 16000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=48000 if "opus" in codec else 16000)
        stream.layout, stream.bit_rate = "mono", bit_rate
        encoder = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout="mono", rate=stream.rate)
        written = 0
        for _, silence in _long_layout(seconds, len(call)):
            for piece in (call, np.zeros(silence, np.int16)):
                piece = piece[: total - written]
                if not piece.size:
                    break
                frame = av.AudioFrame.from_ndarray(piece[np.newaxis], format="s16", layout="mono")
                frame.rate, frame.pts = 16000, written
                for converted in encoder.resample(frame):
                    out.mux(stream.encode(converted))
                written += piece.size
        for converted in encoder.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path


def long_recording_turns(seconds: float) -> list[tuple[float, float, str]]:
    """Who speaks when in `long_recording`'s `seconds`: the sample call's RTTM (start, end,
    speaker) at each of its copies, cut at the end."""
    turns = []
    for line in SAMPLE_RTTM.read_text().splitlines():
        if line.strip():
            fields = line.split()
            turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    found, at = [], 0.0
    for call, silence in _long_layout(seconds, len(_sample_call())):
        found += [(at + start, min(at + end, seconds), speaker) for start, end, speaker in turns if at + start < seconds]
        at += (call + silence) / 16000
    return found


def video_without_sound(path: Path) -> Path:
    """A second of black video and no audio stream: media the service must refuse."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    return path


def word_error_rate(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """WER after lower-casing and dropping punctuation, as transcripts are usually compared. Of
    lists (texts of several clips, in pairs): pooled over all of them, as one corpus, so that each
    clip counts by its words."""
    import jiwer

    normalize = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return jiwer.wer(reference, hypothesis, reference_transform=normalize, hypothesis_transform=normalize)


def claim_duration(mp3: bytes, *, hours: float) -> bytes:
    """An MP3 whose Xing/Info header claims `hours` of audio over the seconds it holds: a
    hostile upload. FFmpeg takes an MP3's duration from that header's frame count."""
    import struct

    tag = max(mp3.find(b"Xing"), mp3.find(b"Info"))
    flags = struct.unpack_from(">I", mp3, tag + 4)[0]
    assert tag >= 0 and flags & 1, "no Xing/Info header with a frame count"
    patched = bytearray(mp3)
    samples_per_frame = 576  # MPEG-2 layer III, what transcode() writes at 16 kHz
    struct.pack_into(">I", patched, tag + 8, int(hours * 3600 * 16000 / samples_per_frame))
    return bytes(patched)


def flac_bomb(minutes: float) -> bytes:
    """A FLAC of `minutes` of silence at 16 kHz whose header does not declare its length (its
    STREAMINFO total-samples field is 0, "unknown"): a few hundred KB that decode to hours, and
    a duration limit can refuse it only while decoding. 241 minutes: 190 KB, in about a second."""
    out_file = io.BytesIO()
    with av.open(out_file, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16000, options={"frame_size": "16384"})
        stream.layout, stream.format = "mono", "s16"
        silence = np.zeros((1, 16384 * 4), np.int16)
        total, pts = int(minutes * 60 * 16000), 0
        while pts < total:
            frame = av.AudioFrame.from_ndarray(silence[:, : total - pts], format="s16", layout="mono")
            frame.rate, frame.pts = 16000, pts
            out.mux(stream.encode(frame))
            pts += frame.samples
        out.mux(stream.encode(None))
    flac = bytearray(out_file.getvalue())
    # STREAMINFO follows "fLaC" and its 4-byte block header; its bytes 10-17 hold the rate (20
    # bits), channels (3), bits per sample (5) and the total samples (the low 36 bits).
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0, "no STREAMINFO first"
    flac[21] &= 0xF0
    flac[22:26] = bytes(4)
    return bytes(flac)
