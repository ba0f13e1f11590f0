"""The live route's completed texts against the file route's transcript, in a minute or two
rather than at real-time pace: where their words differ, and whether another way of decoding
the completed texts would bring them closer.

Each clip of the benchmark corpus (corpus.py: the pyannote sample call and five espeak-ng
passages) is appended at once to a RealtimeSession (serve_app/api/realtime/session.py) with
server VAD, which cuts it into utterances as it does live; nothing decodes meanwhile. Each utterance's
audio is then decoded as the session decodes its completed text (the early decode's audio,
padded into the silence that ended the turn, in UTTERANCE_WINDOW, prompted with the completed
texts before it), and in the other ways below.
Printed for each way: the WER of the completed texts joined against the file route's transcript
and against the words said (the sample call's STM, the text espeak-ng read); with --words, the
words where the live texts and the file route's differ, clip by clip.

Then the baseline, measured in the same run: how far the file route's transcript lies from
itself. Each clip is streamed again behind a few milliseconds of silence (--shifts), and both
the file route (on the audio the session receives, whole) and the live route (as the service
decodes) transcribe it; both are compared with the file route's transcript of the file. The
means over the shifts close the run, with the live route's as a ratio of the file route's.

    .venv/bin/python benchmarks/live_wer.py [--words] [--context-tokens 40] [--shifts 0,10,20,50,100,200]
"""

from __future__ import annotations

import argparse
import base64
import difflib
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from live_engine import CHUNK, tiny_en, transcribed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from live_client import behind_silence, pcm24  # noqa: E402
from media import word_error_rate  # noqa: E402

from serve_app.api.realtime.session import CARRIED_CHARS_PER_TOKEN, UTTERANCE_WINDOW, Limits, RealtimeSession, carried  # noqa: E402
from serve_app.engine.live import AudioDecoder  # noqa: E402
from serve_app.engine.whisper import WhisperEngine  # noqa: E402
from serve_app.options import DecodeOptions  # noqa: E402


def utterances(pcm: bytes) -> list[np.ndarray]:
    """The audio of each utterance a session's server VAD cuts `pcm` into (and a second of
    silence after it), as its completed text decodes it: up to the end of its speech, padded
    (the early decode's audio), or all of it where the turn did not end at a silence."""
    session = RealtimeSession(None, Limits(), model="tiny.en")  # type: ignore[arg-type]
    audio = pcm + bytes(2 * 24000)
    for offset in range(0, len(audio), CHUNK):
        session.append({"audio": base64.b64encode(audio[offset : offset + CHUNK]).decode()})
        while not session.outbox.empty():
            session.outbox.get_nowait()
    pieces = []
    for item in session.committed:
        assert item.audio is not None
        end = len(item.audio) if item.speech_end is None else item.speech_end - item.start
        pieces.append(item.audio[:end])
    return pieces


@dataclass(frozen=True)
class Way:
    """A way to decode a session's completed texts: the options of an utterance's decode, given
    the session's context before it (its last completed words) and how many tokens of it to hear."""

    name: str
    options: Callable[[str, int], DecodeOptions]


WAYS = [
    Way(
        "as the service does (UTTERANCE_WINDOW, prompted with the last completed words: realtime_context_tokens)",
        lambda context, tokens: DecodeOptions(window=UTTERANCE_WINDOW, context=context or None, context_tokens=tokens),
    ),
    Way("in UTTERANCE_WINDOW, not prompted", lambda context, tokens: DecodeOptions(window=UTTERANCE_WINDOW)),
    Way("in Whisper's whole 30 s window, not prompted", lambda context, tokens: DecodeOptions()),
]


def completed(engine: WhisperEngine, model: Any, pieces: list[np.ndarray], way: Way, tokens: int) -> str:
    """The completed texts of a session's utterances (`pieces`), decoded `way`, joined."""
    texts: list[str] = []
    context = ""
    for piece in pieces:
        transcript = engine.transcribe(piece, model, way.options(context, tokens))
        texts.append(" ".join(segment.text.strip() for segment in transcript.segments))
        context = carried(context, texts[-1], CARRIED_CHARS_PER_TOKEN * tokens)
    return " ".join(texts)


def floor(engine: WhisperEngine, model: Any, clips: list[tuple[Path, str]], shifts: list[int], tokens: int) -> None:
    """For each shift, the WER against the file route's transcript of the file (`clips`: each
    with it) of the file route and of the live route, both on the stream delayed by that many
    milliseconds of silence; then their means, the live route's as a ratio of the file route's."""
    references = [reference for _, reference in clips]
    file_route, live = [], []
    for shift in shifts:
        heard, texts = [], []
        for clip, _ in clips:
            pcm = behind_silence(pcm24(clip), shift)
            heard.append(engine.transcribe(AudioDecoder("audio/pcm").decode(pcm), model, DecodeOptions()).text)
            texts.append(completed(engine, model, utterances(pcm), WAYS[0], tokens))
        file_route.append(word_error_rate(references, heard))
        live.append(word_error_rate(references, texts))
        print(
            f"  {shift:3d} ms of silence ahead: against the file route's transcript of the file, the file route "
            f"{file_route[-1]:.3f} and the live route {live[-1]:.3f}",
            flush=True,
        )
    print(
        f"over {len(shifts)} shifts, mean WER against the file route's transcript of the file: the file route on the "
        f"stream {statistics.mean(file_route):.3f}, the live route {statistics.mean(live):.3f} "
        f"({statistics.mean(live) / statistics.mean(file_route):.2f}x the file route's)",
        flush=True,
    )


def differences(reference: str, text: str) -> list[str]:
    """Where `text`'s words differ from `reference`'s (case and punctuation aside)."""

    def words(value: str) -> list[str]:
        return re.sub(r"[^\w\s']", "", value.lower()).split()

    ours, theirs = words(reference), words(text)
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    return [
        f"file route: {' '.join(ours[a1:a2]) or '-'} | live: {' '.join(theirs[b1:b2]) or '-'}"
        for op, a1, a2, b1, b2 in matcher.get_opcodes()
        if op != "equal"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", action="store_true", help="print the words where the texts differ")
    parser.add_argument("--context-tokens", type=int, default=Limits().context_tokens, help="realtime_context_tokens")
    parser.add_argument("--shifts", default="0,10,20,50,100,200", help="ms of silence ahead of each stream; '' skips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        engine, model = tiny_en(Path(scratch), cpu_threads=2, workers=1)
        clips = [
            (clip, said, reference, utterances(pcm24(clip)))
            for clip, said, reference in transcribed(engine, model, Path(scratch))
        ]
        print(f"{sum(len(pieces) for *_, pieces in clips)} utterances in {len(clips)} clips", flush=True)
        tokens = args.context_tokens
        for way in WAYS:
            errors = file_said = live_said = 0.0
            words = said_words = 0
            for clip, said, reference, pieces in clips:
                text = completed(engine, model, pieces, way, tokens)
                size, said_size = len(reference.split()), len(said.split())
                errors += word_error_rate(reference, text) * size
                file_said += word_error_rate(said, reference) * said_size
                live_said += word_error_rate(said, text) * said_size
                words, said_words = words + size, said_words + said_size
                if args.words:
                    print(f"  {clip.stem}:", *differences(reference, text), sep="\n    ")
            print(
                f"{way.name}: WER {errors / words:.3f} against the file route over {words} words; against the words "
                f"said, the live texts {live_said / said_words:.3f} and the file route {file_said / said_words:.3f}",
                flush=True,
            )
        if args.shifts:
            print("the file route against itself, on the same audio streamed behind a little silence:", flush=True)
            shifts = [int(shift) for shift in args.shifts.split(",")]
            floor(engine, model, [(clip, reference) for clip, _, reference, _ in clips], shifts, tokens)
        engine.close()


if __name__ == "__main__":
    main()
