"""Live transcription (/v1/realtime) latency, keeping up, and accuracy, through the openai SDK's
realtime client against the service (config.cpu.yaml, tiny.en, int8), audio sent at real-time
pace in 100 ms chunks of 24 kHz PCM16, server VAD with 500 ms of silence ending a turn:

1. the pyannote sample call, and espeak-ng speech, one session each: time from speech start to
   its first delta, and from the end of an utterance to its completed text; then the five
   espeak-ng passages of benchmarks/corpus.py (five voices, 20 to 60 s each), one
   session each, and those figures over all the espeak-ng utterances (medians);
2. 4 sessions at once, each playing the sample call 3 times over (90 s), while a file
   transcription (the long espeak clip, /v1/audio/transcriptions) runs beside them, or with
   --files N, N of them one after the other: the completed latencies call by call, of the
   utterances that every call has, and how long after its audio ended each session's last text
   came (keeping up: the lag of the last call is no more than that of the first);
3. WER of the completed texts joined against the same file's /v1/audio/transcriptions text;
   and the baseline, in the same run: the WER against that text of the file route itself, on
   the audio each espeak-ng session was sent, behind a little silence (--shifts, in ms): how far
   the file route lies from its own transcript of the same speech.

    .venv/bin/python benchmarks/realtime.py [--sessions 4] [--calls 3] [--files 1] [--partial-interval 0.8] [--context-tokens 40] [--shifts 0,10,20,50,100,200] [--load-only]

--load-only runs the second part alone; --context-tokens sets realtime_context_tokens (0: the
completed texts are not prompted with the session's last words).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from corpus import build  # noqa: E402
from live_client import LiveRun, behind_silence, pcm24, stream  # noqa: E402
from media import SAMPLE_WAV, speak, word_error_rate  # noqa: E402

from serve_app.local import LocalService  # noqa: E402

SPEECH = (
    "The history of the city begins with a small market by the river. Traders came from the hills with wool and cheese. "
    "Fishermen sold their catch on the stones by the water. Over the years a bridge was built, then a church. "
    "Later a school was opened, where the children of the traders learned to read and to count."
)


def file_text(url: str, path: Path, model: str) -> str:
    with path.open("rb") as media:
        response = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": media}, data={"model": model}, timeout=600)
    response.raise_for_status()
    return response.json()["text"]


def stream_wav(pcm: bytes, path: Path) -> Path:
    """The audio a session was sent (audio/pcm: 24 kHz mono PCM16) as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(pcm)
    return path


def file_route_against_itself(url: str, model: str, folder: Path, clips: list[tuple[bytes, str]], shifts: list[int]) -> float:
    """The file route's WER against its own transcript of each clip's file (`clips`: the audio
    streamed, and that transcript), on the streamed audio behind each of `shifts` ms of silence:
    per shift, and the mean, which is returned."""
    references = [reference for _, reference in clips]
    means = []
    for shift in shifts:
        texts = [
            file_text(url, stream_wav(behind_silence(pcm, shift), folder / f"stream-{index}.wav"), model)
            for index, (pcm, _) in enumerate(clips)
        ]
        means.append(word_error_rate(references, texts))
    print(
        "the file route on the streamed audio, against its transcript of the file: WER "
        + ", ".join(f"{wer:.3f}" for wer in means)
        + f" behind {', '.join(map(str, shifts))} ms of silence; mean {statistics.mean(means):.3f}",
        flush=True,
    )
    return statistics.mean(means)


def show(label: str, run: LiveRun, reference: str) -> dict:
    figures = run.summary() | {"wer_vs_file_route": round(word_error_rate(reference, run.text), 4)}
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    print(f"{label:<28} {json.dumps(rounded)}", flush=True)
    return figures


def alone(
    url: str, model: str, folder: Path, sample_pcm: bytes, sample_ref: str, speech: tuple[bytes, str], shifts: list[int]
) -> None:
    """One session at a time: the sample call, the espeak-ng speech, and the corpus's passages;
    then the file route against itself on the espeak-ng audio, the baseline of their WER."""
    show("sample call, 1 session", stream(url, sample_pcm, model=model), sample_ref)
    passages = build(folder / "corpus")[1:]
    clips = [speech] + [(pcm24(clip), file_text(url, clip, model)) for clip in passages]
    espeak_runs = []
    for name, (pcm, reference) in zip(["speech", *(clip.stem for clip in passages)], clips, strict=True):
        espeak_runs.append((stream(url, pcm, model=model), reference))
        show(f"espeak {name}, 1 session", *espeak_runs[-1])
    firsts = [latency for run, _ in espeak_runs for latency in run.first_delta_latencies()]
    completes = [latency for run, _ in espeak_runs for latency in run.completed_latencies()]
    wer = word_error_rate([ref for _, ref in espeak_runs], [run.text for run, _ in espeak_runs])
    words = sum(len(ref.split()) for _, ref in espeak_runs)
    delta_words = [run.delta_words() for run, _ in espeak_runs]
    kept, sent = sum(k for k, _ in delta_words), sum(n for _, n in delta_words)
    print(
        f"espeak-ng, all {len(espeak_runs)} clips: first delta median {statistics.median(firsts):.2f} s "
        f"({len(firsts)} utterances); completed median {statistics.median(completes):.2f} s, max {max(completes):.2f} s; "
        f"WER {wer:.3f} over {words} words; deltas kept by the completed texts {kept}/{sent} words",
        flush=True,
    )
    if shifts:
        floor = file_route_against_itself(url, model, folder, clips, shifts)
        print(f"the live texts' WER is {wer / floor:.2f}x the file route's against itself", flush=True)


def same_speech_by_call(runs: list[LiveRun], call_s: float, calls: int) -> list[list[float]]:
    """The sessions' completed latencies, call by call, of the utterances that every call has:
    those whose speech ends at the same place in each call (to within 0.5 s), so that the
    calls compare the same speech. An utterance belongs to the call its speech ended in; one
    that only some calls have (the first call's opening blip, heard apart only there) is left
    out."""
    ended = []
    for run in runs:
        for end, latency in run.completed_at():
            call = min(int((end - 0.05) // call_s), calls - 1)  # speech that ends with the call is the call's
            ended.append((call, end - call * call_s, latency))
    every = [
        place
        for call, place, _ in ended
        if call == 0 and all(any(c == other and abs(p - place) < 0.5 for c, p, _ in ended) for other in range(1, calls))
    ]
    return [
        [latency for c, place, latency in ended if c == call and any(abs(place - p) < 0.5 for p in every)]
        for call in range(calls)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3, help="how many times each of those sessions plays the sample call")
    parser.add_argument("--files", type=int, default=1, help="file transcriptions beside them, one after the other")
    parser.add_argument("--partial-interval", type=float, default=0.8, help="realtime_partial_interval_s")
    parser.add_argument("--model", default="tiny.en", help="the sessions' and the file route's model (default tiny.en)")
    parser.add_argument("--context-tokens", type=int, default=40, help="realtime_context_tokens")
    parser.add_argument("--shifts", default="0,10,20,50,100,200", help="ms of silence ahead of the audio; '' skips")
    parser.add_argument("--load-only", action="store_true", help="only the sessions at once beside a file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="realtime-bench-"))
    espeak = speak(SPEECH, folder / "speech.wav", voice="en-us", speed=150)
    long_clip = speak(" ".join([SPEECH] * 3), folder / "long.wav", voice="en-us", speed=150)
    service = LocalService(
        model_dir=folder / "models",
        realtime_partial_interval_s=args.partial_interval,
        realtime_context_tokens=args.context_tokens,
    )
    service.start()
    try:
        url = service.url
        sample_ref, speech_ref = file_text(url, SAMPLE_WAV, args.model), file_text(url, espeak, args.model)
        sample_pcm, speech_pcm = pcm24(SAMPLE_WAV), pcm24(espeak)
        print(f"sample call {len(sample_pcm) / 48000:.1f} s, espeak speech {len(speech_pcm) / 48000:.1f} s", flush=True)
        if not args.load_only:
            shifts = [int(shift) for shift in args.shifts.split(",")] if args.shifts else []
            alone(url, args.model, folder, sample_pcm, sample_ref, (speech_pcm, speech_ref), shifts)
        runs: list[LiveRun] = [LiveRun() for _ in range(args.sessions)]

        calls_pcm, calls_ref = sample_pcm * args.calls, " ".join([sample_ref] * args.calls)
        streaming = threading.Event()

        def session(index: int) -> None:
            time.sleep(index * 0.25)  # as people would not start together to the millisecond
            runs[index] = stream(url, calls_pcm, model=args.model, timeout_s=300 * args.calls)

        files: list[float] = []

        def transcribe_beside() -> None:
            while streaming.is_set() and len(files) < args.files:
                started = time.monotonic()
                file_text(url, long_clip, args.model)
                files.append(time.monotonic() - started)

        threads = [threading.Thread(target=session, args=(i,)) for i in range(args.sessions)]
        streaming.set()
        beside = threading.Thread(target=transcribe_beside)
        beside.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        streaming.clear()
        beside.join()
        for index, run in enumerate(runs):
            show(f"sample x{args.calls}, {args.sessions} at once #{index}", run, calls_ref)
        lags = [run.summary()["last_completed_after_audio_s"] for run in runs]
        completes = [latency for run in runs for latency in run.completed_latencies()]
        by_call = same_speech_by_call(runs, len(sample_pcm) / 48000, args.calls)
        print(
            f"{args.sessions} sessions at once, the sample call {args.calls} times over, beside {len(files)} file "
            f"transcriptions ({statistics.median(files):.1f} s each, median): completed latency median "
            f"{statistics.median(completes):.2f} s, max {max(completes):.2f} s; call by call (the utterances every call "
            "has), median "
            + ", ".join(f"{statistics.median(call):.2f}" for call in by_call if call)
            + " s, max "
            + ", ".join(f"{max(call):.2f}" for call in by_call if call)
            + f" s; last text after the audio ended: max {max(x for x in lags if x is not None):.2f} s",
            flush=True,
        )
    finally:
        service.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
