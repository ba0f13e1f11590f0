"""The benchmark corpus: the pyannote sample call and espeak-ng English speech of 20 to 60 s a
clip, made on the fly: about three and a half minutes in all."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pyannote.audio

SAMPLE_WAV = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"

PASSAGES = [
    # about 20 s (espeak-ng at 130 words a minute)
    "The quick brown fox jumps over the lazy dog. Meanwhile, the farmer counts his sheep in the "
    "early morning light, and the village slowly wakes up to the sound of church bells ringing "
    "across the quiet valley. His daughter feeds the hens and carries the milk to the kitchen.",
    # about 30 s
    "Speech recognition systems turn spoken language into text. They are used for subtitles, "
    "meeting notes, voice assistants and the search of large audio archives. A good system must "
    "cope with accents, background noise and people who talk over each other, and it must do so "
    "quickly enough that nobody waits for the words to appear on the screen.",
    # about 40 s
    "On Tuesday the committee met to discuss the budget for next year. After a long debate, they "
    "agreed to spend more on schools, roads and the public library. The mayor said that the new "
    "library would open in the spring, with longer hours and a room for children to read. Some "
    "members asked how the town would pay for it, and the treasurer answered that the old fire "
    "station would be sold to a bakery that wants to open a second shop near the river.",
    # about 50 s
    "Ray Serve scales machine learning models across a cluster of machines. Each deployment can "
    "have many replicas, and requests are balanced between them. When the traffic grows, the "
    "autoscaler adds replicas, and when it falls, it removes them again so that the hardware is "
    "not wasted. Operators describe the whole graph in one file, which says how many processors "
    "and how much memory each part may use. A request that arrives while every replica is busy "
    "waits in a queue, and when the queue is full, the caller is told to come back a little later "
    "instead of waiting forever for an answer that may never come.",
    # about 60 s
    "The old lighthouse stands on a rock at the end of the harbour. For more than a hundred years "
    "its keeper climbed the spiral stairs every evening to light the lamp, and every morning he "
    "climbed them again to put it out. Ships from the north steered by its beam when the fog came "
    "in from the sea. Today the lamp is switched on by a clock, and the keeper's cottage has become "
    "a small museum. Visitors can see his logbooks, in which he wrote down the weather, the ships "
    "that passed and the birds that rested on the gallery during the autumn storms. On clear "
    "evenings the museum stays open late, and children are allowed to climb to the top and look "
    "out over the water towards the islands.",
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
        voice = ("en-us", "en", "en-us+f3", "en+m3", "en-us+m2")[number % 5]
        subprocess.run([espeak, "-v", voice, "-s", "130", "-w", str(clip), text], check=True)
        clips.append(clip)
    return clips


def long_clip(folder: Path, minutes: float) -> Path:
    """One clip of about `minutes` of speech: the passages read one after another, repeated."""
    words_per_minute = 150
    text = " ".join(PASSAGES)
    repeats = max(1, round(minutes * words_per_minute / len(text.split())))
    clip = folder / "long.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", str(clip), " ".join([text] * repeats)], check=True
    )
    return clip


def seconds_of_audio(files: list[Path]) -> float:
    """The audio the files hold, decoded as the service decodes it."""
    from serve_app.engine.audio import SAMPLE_RATE, decode_audio

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
