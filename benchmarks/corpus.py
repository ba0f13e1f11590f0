"""The benchmark corpus: the pyannote sample call and espeak-ng English speech, made on the fly."""

from __future__ import annotations

import shutil
import subprocess
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
