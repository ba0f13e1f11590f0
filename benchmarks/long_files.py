"""Long files through the service: memory over time and wall time for an hour of audio.

The file is real speech and silence (tests/media.py `long_recording`: the pyannote sample call
over and over, 2 to 15 s of silence between two calls), Opus at 24 kbit/s. The service is
config.cpu.yaml on a local Ray, reached over HTTP, tiny.en and the embedded diarization
pipeline. For each length (`--minutes`, 60 by default; `--minutes 60 180` adds 3 hours):

1. transcribe, streamed (SSE): when the first segment came, the longest wait between two, and
   the share of the wall time that had passed when half the segments had come;
2. diarize, streamed (`POST /v1/audio/diarize?stream=true`, the Transcriber and the Diarizer at
   once; a file over 15 minutes is diarized in pieces of 10, serve_app/diarization/pieces.py): the
   same figures, and how many speakers the segments name;
3. the job API: the job's progress, polled 4 times a second, and its largest step.

The resident memory of each replica (Ingress, Transcriber, Diarizer, JobQueue) is sampled every
`--every` seconds throughout: its heaps (`anon`) and the shared memory it maps (`shmem`, Ray's
object store among it). Printed: memory over time, each replica's peak in each step and its
memory 10 s after the step, against its memory after a warm-up request; and wall time against
the audio's duration. The machine's load average is printed before and after: on a shared
machine the wall times say more about the load than about the service.

    .venv/bin/python benchmarks/long_files.py [--minutes 60 [180]] [--every 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import httpx
from httpx_sse import EventSource

from serve_app.local import LocalService

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from media import SAMPLE_WAV, long_recording  # noqa: E402
from replicas import MiB, memory, replica_pids  # noqa: E402

DEPLOYMENTS = ("Ingress", "Transcriber", "Diarizer", "JobQueue")
SETTLE_S = 10


class MemoryLog:
    """Each replica's memory every `every` seconds, labelled with the step under way."""

    def __init__(self, every: float) -> None:
        self.pids = {name: replica_pids(name) for name in DEPLOYMENTS}
        self.rows: list[tuple[float, str, dict[str, dict[str, int]]]] = []
        self.step = "idle"
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(every,), daemon=True)
        self._thread.start()

    def now(self) -> dict[str, dict[str, int]]:
        """Each deployment's memory (its replicas' summed), in bytes."""
        summed = {}
        for name, pids in self.pids.items():
            each = [memory(pid) for pid in pids]
            summed[name] = {kind: sum(m[kind] for m in each) for kind in ("rss", "anon", "shmem")}
        return summed

    def _watch(self, every: float) -> None:
        while not self._stop.wait(every):
            self.rows.append((time.monotonic() - self._started, self.step, self.now()))

    def peak(self, step: str) -> dict[str, int]:
        return {name: max((row[2][name]["rss"] for row in self.rows if row[1] == step), default=0) for name in DEPLOYMENTS}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def stream(client: httpx.Client, path: Path, route: str = "/v1/audio/transcriptions") -> dict[str, float]:
    started = time.perf_counter()
    arrivals: list[float] = []
    speakers: set[str] = set()
    with (
        path.open("rb") as media,
        client.stream("POST", route, params={"stream": "true"}, files={"file": media}, data={"model": "tiny.en"}) as response,
    ):
        response.raise_for_status()
        for event in EventSource(response).iter_sse():
            if event.event == "segment":
                arrivals.append(time.perf_counter() - started)
                speakers.add(json.loads(event.data).get("speaker"))
            elif event.event == "error":
                raise SystemExit(f"{route} failed: {event.data}")
    wall = time.perf_counter() - started
    waits = [later - earlier for earlier, later in zip([0.0, *arrivals], arrivals)]
    return {
        "wall": wall,
        "segments": len(arrivals),
        "first": arrivals[0],
        "longest wait": max(waits),
        "half of them by": arrivals[len(arrivals) // 2] / wall,
        **({"speakers": len(speakers)} if speakers != {None} else {}),
    }


def job(client: httpx.Client, path: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    response = client.post("/transcription/job", json={"path": str(path), "output_path": f"{out}/", "model": "tiny.en"})
    response.raise_for_status()
    job_id = response.json()["id"]
    seen = [0]
    while True:
        shown = client.get(f"/transcription/job/{job_id}").json()
        if shown["progress"] != seen[-1]:
            seen.append(shown["progress"])
        if shown["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.25)
    if shown["status"] != "COMPLETED":
        raise SystemExit(f"the job failed: {shown['error']}")
    steps = [later - earlier for earlier, later in zip(seen, seen[1:])]
    return {"wall": time.perf_counter() - started, "progress values": len(seen), "largest step": max(steps)}


def settle(log: MemoryLog, step: str) -> dict[str, dict[str, int]]:
    log.step = f"{step}, after"
    time.sleep(SETTLE_S)
    return log.now()


def _mib(kinds: dict[str, int]) -> str:
    return f"{kinds['rss'] / MiB:.0f} ({kinds['anon'] / MiB:.0f}+{kinds['shmem'] / MiB:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[60], help="lengths of audio (default 60)")
    parser.add_argument("--every", type=float, default=2, help="seconds between two memory samples (default 2)")
    args = parser.parse_args()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        media, out = folder / "media", folder / "out"
        media.mkdir()
        out.mkdir()
        files = {minutes: long_recording(media / f"{minutes:g}-minutes.ogg", minutes * 60) for minutes in args.minutes}
        service = LocalService(
            model_dir=folder / "models",
            job_media_folders=[str(media)],
            job_output_folders=[str(out)],
            job_store_dir=folder / "jobs",
        )
        service.start()
        results: dict[str, dict[str, float]] = {}
        after: dict[str, dict[str, dict[str, int]]] = {}
        try:
            with httpx.Client(base_url=service.url, timeout=4 * 3600) as client:
                warm = client.post("/v1/audio/diarize", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "tiny.en"})
                warm.raise_for_status()
                log = MemoryLog(args.every)
                time.sleep(SETTLE_S)
                before = log.now()
                for minutes, path in files.items():
                    for name, run in (
                        ("transcribe, streamed", partial(stream, client, path)),
                        ("diarize, streamed", partial(stream, client, path, "/v1/audio/diarize")),
                        ("job", partial(job, client, path, out)),
                    ):
                        step = f"{minutes:g} min: {name}"
                        log.step = step
                        results[step] = run()
                        after[step] = settle(log, step)
                log.stop()
        finally:
            service.stop()

    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)"
    )
    print("\nresident memory (MiB) of each deployment's replicas over time: rss (anon + shmem)")
    print(f"{'s':>7}  {'step':<28}" + "".join(f"{name:>24}" for name in DEPLOYMENTS))
    shown_every = max(1, len(log.rows) // 60)
    for seconds, step, row in log.rows[::shown_every]:
        cells = "".join(f"{_mib(row[name]):>24}" for name in DEPLOYMENTS)
        print(f"{seconds:>7.0f}  {step:<28}{cells}")

    print("\nbefore (after a warm-up request): " + ", ".join(f"{n} {before[n]['rss'] / MiB:.0f}" for n in DEPLOYMENTS))
    print(f"{'step':<28}{'wall s':>8}{'x real time':>12}   peak rss MiB / {SETTLE_S} s after: " + ", ".join(DEPLOYMENTS))
    for step, result in results.items():
        minutes = float(step.split(" min")[0])
        peaks = log.peak(step)
        memory_cells = ", ".join(f"{peaks[n] / MiB:.0f}/{after[step][n]['rss'] / MiB:.0f}" for n in DEPLOYMENTS)
        print(f"{step:<28}{result['wall']:>8.0f}{minutes * 60 / result['wall']:>12.1f}   {memory_cells}")
        details = ", ".join(
            f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}" for key, value in result.items()
        )
        print(f"    {details}")


if __name__ == "__main__":
    main()
