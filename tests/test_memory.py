"""Memory given back: the heaps of a process after a request (serve_app/memory.py), and the
replicas of the service after diarizing a long file."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import LONG_MINUTES
from media import SAMPLE_WAV
from replicas import MiB, memory, replica_pids

from serve_app.memory import forget_shared_pages

# Blocks of 1 MiB freed among small blocks that stay, after glibc's mmap threshold has risen past
# them (the first 16 MiB block freed raises it): the pattern of a long request's arrays.
FRAGMENTED = """
import json
from pathlib import Path
import numpy as np
from serve_app.memory import release_memory

def rss():
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024

np.ones(2**21)  # 16 MiB, freed at once
before = rss()
blocks, kept = [], []
for _ in range(300):
    blocks.append(np.ones(2**17))  # 1 MiB
    kept.append(bytes(1000))  # over 512 bytes: from malloc, not Python's own small-object arenas
del blocks
freed = rss()
release_memory()
print(json.dumps({"freed": freed - before, "released": rss() - before}))
"""


def test_freed_blocks_go_back_to_the_system_at_the_release() -> None:
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", FRAGMENTED], cwd=root, capture_output=True, text=True, check=True)
    plain = json.loads(done.stdout)
    assert plain["freed"] > 200 * MiB, plain  # glibc's defaults: 300 MiB freed, all still resident
    assert plain["released"] < 50 * MiB, plain  # release_memory gives it back


def shared_resident() -> int:
    return memory(os.getpid())["shmem"]


def test_pages_read_in_place_from_shared_memory_stop_counting_once_forgotten() -> None:
    # Shared memory, as Ray's object store is: what the process touched counts in its RSS.
    shared = mmap.mmap(-1, 64 * MiB)
    samples = np.frombuffer(shared, dtype=np.float32)
    samples[:] = 0.25
    before = shared_resident()
    assert before >= 60 * MiB
    assert forget_shared_pages(samples)
    assert shared_resident() < before - 60 * MiB
    assert float(samples.sum()) == 0.25 * samples.size  # read again: the same samples
    del samples
    shared.close()

    own = np.full(2**20, 0.5, dtype=np.float32)  # the process's own memory is left as it is
    assert not forget_shared_pages(own)
    assert float(own.sum()) == 0.5 * own.size


GIVEN_BACK_WITHIN = 200 * MiB


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 20 minutes diarize in about 2 on 2 idle cores; far longer on busy ones
def test_the_replicas_give_back_their_memory_after_diarizing_a_long_file(service, twenty_minutes: Path) -> None:
    long = twenty_minutes
    with httpx.Client(base_url=service.url, timeout=3600) as client:
        warm = client.post("/v1/audio/diarize", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "tiny.en"})
        assert warm.status_code == 200, warm.text  # the models loaded: what a replica holds while it serves
        pids = {name: replica_pids(name) for name in ("Transcriber", "Diarizer")}
        assert all(pids.values()), pids
        before = {pid: memory(pid)["rss"] for group in pids.values() for pid in group}
        with long.open("rb") as media:
            response = client.post("/v1/audio/diarize", files={"file": media}, data={"model": "tiny.en"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(LONG_MINUTES * 60, abs=1)
    assert {segment["speaker"] for segment in body["segments"]} >= {"SPEAKER_00", "SPEAKER_01"}
    assert body["segments"][-1]["end"] > LONG_MINUTES * 60 - 60  # words to the end

    deadline = time.monotonic() + 30  # a replica gives its memory back just after it answers
    while True:
        after = {pid: memory(pid)["rss"] for pid in before}
        grown = {pid: after[pid] - before[pid] for pid in before}
        if max(grown.values()) < GIVEN_BACK_WITHIN or time.monotonic() > deadline:
            break
        time.sleep(1)
    shown = {
        name: {pid: f"{before[pid] / MiB:.0f} -> {after[pid] / MiB:.0f} MiB" for pid in group} for name, group in pids.items()
    }
    print(f"\nresident memory of the replicas before and after diarizing {LONG_MINUTES} minutes: {shown}")
    assert max(grown.values()) < GIVEN_BACK_WITHIN, shown
