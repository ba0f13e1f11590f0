"""Live sessions in-process, over the engine itself (no Ray, no sockets): what the session's own
decisions give (partial decodes, turns, early decodes), on more speech than benchmarks/realtime.py
streams through the service, in less time to set up.

Each clip of the benchmark corpus (corpus.py: the pyannote sample call and five espeak-ng
passages, about 200 s) goes to a RealtimeSession (serve_app/api/realtime/session.py) in 100 ms
pieces of 24 kHz PCM16 at real-time pace, with server VAD (500 ms of silence ends a turn); the session
decodes through a WhisperEngine as the Transcriber runs it on 2 cores (2 workers of one thread,
tiny.en, int8, beam 5). Printed for each clip and for all: the WER of the completed texts joined
against the engine's transcript of the whole file; both texts' WER against the words said (the
sample call's STM, the text espeak-ng read), so that the live route's own errors show apart
from the file route's; the first delta's latency after the speech began, and the completed
text's after the speech ended (medians, as benchmarks/realtime.py measures them). The corpus
runs twice: first with every decode in Whisper's whole 30 s window (the baseline), then in
encoder windows fitted to their audio, as the service decodes them (DecodeOptions.window: the
drafts' and the completed texts'); the ratios of their medians close the run.

    .venv/bin/python benchmarks/live_engine.py [--partial-interval 0.8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from corpus import PASSAGES, build

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from live_client import LiveRun, pcm24, speech_regions  # noqa: E402
from media import reference_words, word_error_rate  # noqa: E402

from serve_app.api.realtime import Limits, RealtimeSession  # noqa: E402
from serve_app.engine.audio import decode_audio  # noqa: E402
from serve_app.engine.whisper import WhisperEngine  # noqa: E402
from serve_app.models.catalogue import ModelCatalogue  # noqa: E402
from serve_app.models.embedded import EMBEDDED_MODELS  # noqa: E402
from serve_app.options import DecodeOptions  # noqa: E402

CHUNK = 4800  # bytes: 100 ms of 24 kHz PCM16


class EngineDecoder:
    """The session's Decoder over a WhisperEngine in this process; with `fitted` False, every
    decode runs in Whisper's whole window (the baseline)."""

    def __init__(self, engine: WhisperEngine, model: Any, *, fitted: bool = True) -> None:
        self.engine, self.model, self.fitted = engine, model, fitted

    async def resolve(self, name: str, options: DecodeOptions) -> Any:
        return self.model

    async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str:
        options = options if self.fitted else replace(options, window=None)
        segments = [event async for event in self.engine.astream(audio, model, options)][1:]
        return " ".join(segment.text.strip() for segment in segments)


async def stream(decoder: EngineDecoder, pcm: bytes, limits: Limits) -> LiveRun:
    """The session's events, with their times since the first piece was sent, read as the
    service's clients read them (tests/live_client.py)."""
    session = RealtimeSession(decoder, limits, model="tiny.en", resolved=decoder.model)
    events: list[tuple[float, Any]] = []
    inbox: asyncio.Queue[str | None] = asyncio.Queue()
    started = time.monotonic()

    async def send(text: str) -> None:
        events.append((time.monotonic() - started, SimpleNamespace(**json.loads(text))))

    running = asyncio.create_task(session.run(inbox.get, send))
    audio = pcm + bytes(2 * 24000)  # a second of silence after it
    for index, offset in enumerate(range(0, len(audio), CHUNK)):
        await asyncio.sleep(max(0.0, started + index * 0.1 - time.monotonic()))
        piece = base64.b64encode(audio[offset : offset + CHUNK]).decode()
        await inbox.put(json.dumps({"type": "input_audio_buffer.append", "audio": piece}))
    while session.committed or session.partials or time.monotonic() - events[-1][0] - started < 2:
        await asyncio.sleep(0.1)
    await inbox.put(None)
    await running
    return LiveRun(events=events, audio_s=len(pcm) / 2 / 24000, speech=speech_regions(pcm))


@dataclass
class Totals:
    """One setting's figures over the corpus."""

    errors: float = 0.0
    words: int = 0
    file_said_errors: float = 0.0
    live_said_errors: float = 0.0
    said_words: int = 0
    firsts: list[float] = field(default_factory=list)
    completes: list[float] = field(default_factory=list)
    kept: int = 0
    sent: int = 0

    def line(self) -> str:
        return (
            f"WER {self.errors / self.words:.3f} over {self.words} words; against the words said, the file route "
            f"{self.file_said_errors / self.said_words:.3f} and the live texts {self.live_said_errors / self.said_words:.3f} "
            f"over {self.said_words} words; first delta median {statistics.median(self.firsts):.2f} s "
            f"({len(self.firsts)} utterances); completed median {statistics.median(self.completes):.2f} s, "
            f"max {max(self.completes):.2f} s; deltas kept by the completed texts {self.kept}/{self.sent} words"
        )


def run_corpus(decoder: EngineDecoder, clips: list[tuple[Path, str, str]], limits: Limits) -> Totals:
    """Each clip streamed to a session; a line for each, and the totals."""
    totals = Totals()
    print(
        f"{'clip':<16}{'words':>6}{'WER':>7}{'file/said':>11}{'live/said':>11}{'first delta s':>15}{'completed s':>13}",
        flush=True,
    )
    for clip, said, reference in clips:
        run = asyncio.run(stream(decoder, pcm24(clip), limits))
        text, first, complete = run.text, run.first_delta_latencies(), run.completed_latencies()
        error, size = word_error_rate(reference, text), len(reference.split())
        file_said, live_said, said_size = word_error_rate(said, reference), word_error_rate(said, text), len(said.split())
        totals.errors += error * size
        totals.words += size
        totals.file_said_errors += file_said * said_size
        totals.live_said_errors += live_said * said_size
        totals.said_words += said_size
        totals.firsts += first
        totals.completes += complete
        kept, sent = run.delta_words()
        totals.kept, totals.sent = totals.kept + kept, totals.sent + sent
        print(
            f"{clip.stem:<16}{size:>6}{error:>7.3f}{file_said:>11.3f}{live_said:>11.3f}"
            f"{statistics.median(first) if first else float('nan'):>15.2f}"
            f"{statistics.median(complete) if complete else float('nan'):>13.2f}",
            flush=True,
        )
    return totals


def tiny_en(scratch: Path, *, cpu_threads: int, workers: int) -> tuple[WhisperEngine, Any]:
    """An engine (tiny.en's settings in config.cpu.yaml: int8, beam 5) and tiny.en loaded in it,
    from the embedded model seeded under `scratch`."""
    catalogue = ModelCatalogue(scratch / "models")
    catalogue.seed([model for model in EMBEDDED_MODELS if model.id == "tiny.en"])
    engine = WhisperEngine(cpu_threads=cpu_threads, workers=workers, beam_size=5, batch_audio_seconds=120)
    return engine, engine.load(catalogue.find("tiny.en").path)


def transcribed(engine: WhisperEngine, model: Any, scratch: Path) -> list[tuple[Path, str, str]]:
    """The corpus's clips, built under `scratch`, each with the words said and the file route's
    transcript of it (the engine's, of the whole file)."""
    clips = []
    for clip, said in zip(build(scratch / "corpus"), [reference_words(), *PASSAGES]):
        with clip.open("rb") as media:
            clips.append((clip, said, engine.transcribe(decode_audio(media), model, DecodeOptions()).text))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partial-interval", type=float, default=0.8, help="realtime_partial_interval_s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        engine, model = tiny_en(Path(scratch), cpu_threads=1, workers=2)
        limits = Limits(partial_interval_s=args.partial_interval)
        clips = transcribed(engine, model, Path(scratch))
        results = {}
        for label, fit in (
            ("Whisper's whole window (the baseline)", False),
            ("fitted windows (as the service decodes)", True),
        ):
            print(f"every decode in {label}:", flush=True)
            results[fit] = run_corpus(EngineDecoder(engine, model, fitted=fit), clips, limits)
            print(f"all: {results[fit].line()}", flush=True)
        engine.close()
    whole, fitted = results[False], results[True]
    for name, before, after in (("first delta", whole.firsts, fitted.firsts), ("completed", whole.completes, fitted.completes)):
        ratio = statistics.median(before) / statistics.median(after)
        print(f"{name} median: fitted windows {ratio:.2f}x sooner than whole windows, in this run")


if __name__ == "__main__":
    main()
