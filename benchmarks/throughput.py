"""Throughput, first-segment latency and memory of whisper-serve against the engine it wraps.

In one run, on the corpus of benchmarks/corpus.py (copied `--copies` times), with tiny.en,
int8, beam 5, in alternating rounds so that the noise of a shared machine falls on every path:

1. the engine in-process, one file after another (faster-whisper's `WhisperModel.transcribe`,
   in a process of its own on one thread): the baseline, 1.00;
2. the service (config.cpu.yaml) over HTTP, one request at a time;
3. the service with 4 and with 8 concurrent clients;
4. the machine's limit: one engine process a core, one thread each, faster-whisper's
   `BatchedInferencePipeline`, the files dealt out between them, all at once; and one such
   process alone, which shows what batching alone gains on this machine;
5. time to the first streamed segment of a long clip, service against engine;
6. the service's memory, as PSS summed over every one of its processes, Ray's included
   (benchmarks/memory.py), by deployment and process: idle once warm (after one transcription
   and one diarization), at its peak under 8 concurrent clients (a run of its own after the
   timed ones: sampling the memory takes CPU), at its peak while
   `--diarizations` sample calls are diarized two at a time, and idle after all that;
7. the cold start: from starting `scripts/serve` (installed, the models already in its model
   folder) to the first 200 of a transcription.

The service runs as an operator runs it, `scripts/serve` on config.cpu.yaml (with a free port
and a model folder of the run's own: benchmarks/serve_script.py). Speeds are medians over the
rounds, as ratios to the baseline of the same run, with each path's word error rate on the
sample call.

    .venv/bin/python benchmarks/throughput.py [--rounds 3] [--copies 2] [--minutes 3] [--diarizations 14]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

os.environ.setdefault("RAY_AUTH_MODE", "token")  # scripts/serve's Ray asks for the token; read when ray is imported
# Serve's handle keeps a thread that, once this script has let go of the service's Ray, would
# start a Ray of its own (with a dashboard) beside the service being measured.
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
import ray
from corpus import SAMPLE_WAV, build, long_clip, seconds_of_audio
from httpx_sse import EventSource
from memory import PeakWatch, snapshot, table
from ray import serve
from serve_script import ScriptService, seed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from media import reference_words, word_error_rate  # noqa: E402  (the tests' measure of WER)

CORES = len(os.sched_getaffinity(0))
GiB = 1024**3


class Run:
    """One path's measurements over the rounds."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.walls: list[float] = []
        self.sample_text = ""

    def add(self, wall: float, texts: dict[str, str]) -> None:
        self.walls.append(wall)
        self.sample_text = texts.get(str(SAMPLE_WAV), self.sample_text)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


def engine_processes(model_dir: Path, mode: str, shares: list[list[Path]]) -> dict:
    """Start one engine process a share, let them all go at once once their models are loaded;
    the wall seconds until the last is done, their texts, and the first segment's time."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(HERE / "engine_process.py"), str(model_dir), mode, *map(str, share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = [json.loads(process.stdout.readline()) for process in processes]
    wall = time.perf_counter() - started
    for process in processes:
        process.wait()
    texts = {path: text for result in results for path, text in result["texts"].items()}
    return {"wall": wall, "texts": texts, "first": results[0]["first"], "peak_bytes": max(r["peak_bytes"] for r in results)}


def deal(files: list[Path], seconds: dict[Path, float], hands: int) -> list[list[Path]]:
    """The files dealt into `hands` shares of about equal audio, longest first."""
    shares: list[list[Path]] = [[] for _ in range(hands)]
    totals = [0.0] * hands
    for path in sorted(files, key=seconds.__getitem__, reverse=True):
        lightest = totals.index(min(totals))
        shares[lightest].append(path)
        totals[lightest] += seconds[path]
    return shares


def through_service(url: str, files: list[Path], clients: int) -> tuple[float, dict[str, str]]:
    """`clients` threads posting the files, each the next one waiting; wall seconds and texts."""
    waiting: queue.Queue[Path] = queue.Queue()
    for path in files:
        waiting.put(path)
    texts: dict[str, str] = {}

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                try:
                    path = waiting.get_nowait()
                except queue.Empty:
                    return
                with path.open("rb") as media:
                    response = http.post("/v1/audio/transcriptions", files={"file": media}, data={"model": "tiny.en"})
                response.raise_for_status()
                texts[str(path)] = response.json()["text"]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return time.perf_counter() - started, texts


def service_first_segment(url: str, clip: Path) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    with (
        httpx.Client(base_url=url, timeout=600) as client,
        clip.open("rb") as media,
        client.stream(
            "POST", "/v1/audio/transcriptions", params={"stream": "true"}, files={"file": media}, data={"model": "tiny.en"}
        ) as response,
    ):
        for event in EventSource(response).iter_sse():
            if event.event == "segment" and first is None:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


def diarize(url: str, times: int, clients: int = 2) -> None:
    """The sample call diarized `times`, by `clients` at once; each retried while the Diarizer
    is still starting (503)."""

    def one(_: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            for _ in range(240):
                with SAMPLE_WAV.open("rb") as media:
                    response = http.post("/v1/audio/diarize", files={"file": media}, data={"model": "tiny.en"})
                if response.status_code != 503:
                    response.raise_for_status()
                    return
                time.sleep(1)
            response.raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(times)))


def idle(service: ScriptService, settle: float = 5.0):
    """The service's memory once its replicas have had `settle` seconds to quiet down."""
    time.sleep(settle)
    return snapshot(service.roots, service.groups)


DEPLOYMENTS = ("Ingress", "Transcriber", "Diarizer", "ModelStore", "JobQueue", "controller", "proxy", "serve run")


def transcriber_counts() -> tuple[int, int]:
    state = serve.get_deployment_handle("Transcriber", app_name="whisper").describe.remote().result()
    return state["batches"], state["chunks_decoded"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2, help="copies of the corpus each path transcribes (default 2)")
    parser.add_argument("--minutes", type=float, default=3, help="length of the first-segment clip (default 3)")
    parser.add_argument("--diarizations", type=int, default=14, help="sample calls diarized for the memory peak (default 14)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        clips = build(Path(scratch) / "corpus")
        clip_seconds = {clip: seconds_of_audio([clip]) for clip in clips}
        files = clips * args.copies
        audio_seconds = sum(clip_seconds[path] for path in files)
        long = long_clip(Path(scratch), args.minutes)
        model_dir = Path(scratch) / "models"
        seed(model_dir)
        service = ScriptService(model_dir)
        try:
            cold_start = service.start(SAMPLE_WAV)
            diarize(service.url, 1)
            warm = idle(service)
            ray.init(address=service.ray_address, namespace="serve", log_to_driver=False)
            model_dir = model_dir / "tiny.en"
            baseline, alone = Run("engine in-process, one file after another"), Run("service, one request at a time")
            batched, limit = (
                Run("engine in-process, batched, one process"),
                Run(f"machine limit: {CORES} engine processes, batched"),
            )
            concurrent = {clients: Run(f"service, {clients} concurrent clients") for clients in (4, 8)}
            firsts: dict[str, list[tuple[float, float]]] = {"engine": [], "service": []}
            batched_before = transcriber_counts()
            engine_peak = 0
            for _ in range(args.rounds):
                result = engine_processes(model_dir, "sequential", [files])
                baseline.add(result["wall"], result["texts"])
                engine_peak = max(engine_peak, result["peak_bytes"])
                alone.add(*through_service(service.url, files, 1))
                for clients, run in concurrent.items():
                    run.add(*through_service(service.url, files, clients))
                result = engine_processes(model_dir, "batched", [files])
                batched.add(result["wall"], result["texts"])
                result = engine_processes(model_dir, "batched", deal(files, clip_seconds, CORES))
                limit.add(result["wall"], result["texts"])
                engine = engine_processes(model_dir, "sequential", [[long]])
                firsts["engine"].append((engine["first"], engine["wall"]))
                firsts["service"].append(service_first_segment(service.url, long))
            batches, chunks = (after - before for after, before in zip(transcriber_counts(), batched_before))
            ray.shutdown()
            # Apart from the timed runs: reading every process's smaps_rollup twice a second
            # takes CPU from the service.
            busy = PeakWatch(service.roots, service.groups)
            through_service(service.url, files, 8)
            busy.stop()
            diarizing = PeakWatch(service.roots, service.groups)
            diarize(service.url, args.diarizations)
            diarizing.stop()
            after = idle(service)
            long_seconds = seconds_of_audio([long])
        finally:
            service.stop()

    reference = reference_words()
    print(
        f"corpus: {len(clips)} clips x {args.copies} copies, {audio_seconds:.1f} s of audio; tiny.en, int8, beam 5; "
        f"{CORES} cores; {args.rounds} rounds, medians"
    )
    width = max(len(run.label) for run in [baseline, limit]) + 2
    print(f"{'path':<{width}}{'wall s':>8}{'audio s/s':>11}{'vs baseline':>13}{'WER sample':>12}")
    for run in [baseline, alone, *concurrent.values(), batched, limit]:
        ratio = baseline.wall / run.wall
        print(
            f"{run.label:<{width}}{run.wall:>8.2f}{audio_seconds / run.wall:>11.2f}{ratio:>13.2f}"
            f"{word_error_rate(reference, run.sample_text):>12.3f}"
        )
    print(
        f"8 concurrent clients / machine limit: {limit.wall / concurrent[8].wall:.2f}; "
        f"the service decoded {chunks} chunks in {batches} batches ({chunks / max(1, batches):.1f} a batch)"
    )

    (engine_first, engine_whole), (service_first, service_whole) = (
        tuple(statistics.median(t[i] for t in firsts[path]) for i in (0, 1)) for path in ("engine", "service")
    )
    print(f"\nfirst streamed segment of a {long_seconds:.0f} s clip:")
    print(f"{'path':<{width}}{'first s':>8}{'whole s':>9}{'first/whole':>13}")
    print(f"{'engine in-process':<{width}}{engine_first:>8.3f}{engine_whole:>9.2f}{engine_first / engine_whole:>13.2f}")
    print(f"{'service, SSE over HTTP':<{width}}{service_first:>8.3f}{service_whole:>9.2f}{service_first / service_whole:>13.2f}")
    print(f"service first segment - engine first segment: {1000 * (service_first - engine_first):+.0f} ms")

    columns = {
        "idle, warm": warm.by_role,
        "8 clients": busy.peak_by_role,
        f"{args.diarizations} diarized": diarizing.peak_by_role,
        "idle after": after.by_role,
    }
    print("\nmemory (PSS, every process of the service, Ray's included; peaks sampled twice a second):")
    print(table(columns, after.counts, order=DEPLOYMENTS))
    print(
        f"the whole service: idle {warm.total / GiB:.2f} GiB over {warm.processes} processes; at its peak under 8 clients "
        f"{busy.peak_total / GiB:.2f} GiB, diarizing {diarizing.peak_total / GiB:.2f} GiB; idle after {after.total / GiB:.2f} GiB. "
        f"One engine process's peak RSS: {engine_peak / GiB:.2f} GiB"
    )
    print(f"cold start: scripts/serve started to the first 200 of a transcription: {cold_start:.1f} s")


if __name__ == "__main__":
    main()
