"""The benchmark corpus: the pyannote sample call and espeak-ng English speech, made on the fly."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pyannote.audio

SAMPLE_WAV = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"

PASSAGES = [
    "The quick brown fox jumps over the lazy dog. Meanwhile, the farmer counts his sheep in the "
    "early morning light, and the village slowly wakes up to the sound of church bells.",
    "Speech recognition systems turn spoken language into text. They are used for subtitles, "
    "meeting notes, voice assistants and the search of large audio archives.",
    "On Tuesday the committee met to discuss the budget for next year. After a long debate, they "
    "agreed to spend more on schools, roads and the public library.",
    "Ray Serve scales machine learning models across a cluster of machines. Each deployment can "
    "have many replicas, and requests are balanced between them.",
]


def build(folder: Path) -> list[Path]:
    """The clips of the corpus, written into `folder`: the sample and one clip a passage."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("the benchmark corpus needs espeak-ng: apt-get install espeak-ng")
    folder.mkdir(parents=True, exist_ok=True)
    clips = [SAMPLE_WAV]
    for number, text in enumerate(PASSAGES):
        clip = folder / f"passage-{number}.wav"
        voice = ("en-us", "en", "en-us+f3", "en+m3")[number % 4]
        subprocess.run([espeak, "-v", voice, "-s", "130", "-w", str(clip), text], check=True)
        clips.append(clip)
    return clips


def seconds_of_audio(files: list[Path]) -> float:
    """The audio the files hold, decoded as the service decodes it."""
    from serve_app.audio import SAMPLE_RATE, decode_audio

    total = 0.0
    for path in files:
        with open(path, "rb") as media:
            total += decode_audio(media).size / SAMPLE_RATE
    return total


def in_process(model, files: list[Path]) -> float:
    """The baseline: faster-whisper (a loaded WhisperModel), one file after another; wall seconds."""
    started = time.perf_counter()
    for path in files:
        segments, _ = model.transcribe(str(path), beam_size=5)
        "".join(segment.text for segment in segments)
    return time.perf_counter() - started


def print_speeds(audio_seconds: float, rows: list[tuple[str, list[float]]]) -> None:
    """A table of wall seconds (median of the rounds), audio seconds per wall second, and the
    ratio to the first row, the baseline measured in the same run."""
    width = max(len(label) for label, _ in rows) + 2
    print(f"{'path':<{width}}{'wall s':>9}{'audio s / wall s':>19}{'ratio':>8}")
    base_speed = audio_seconds / statistics.median(rows[0][1])
    for label, times in rows:
        speed = audio_seconds / statistics.median(times)
        print(f"{label:<{width}}{statistics.median(times):>9.2f}{speed:>19.2f}{speed / base_speed:>8.2f}")
