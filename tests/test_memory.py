"""Memory given back: the heaps of a process after a request (serve_app/memory.py), and the
replicas of the service after diarizing a long file."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GIVEN_BACK_WITHIN, LONG_MINUTES, LongDiarization
from replicas import MiB, memory

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


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 20 minutes diarize in about 2 on 2 idle cores; far longer on busy ones
def test_the_replicas_give_back_their_memory_after_diarizing_a_long_file(long_diarization: LongDiarization) -> None:
    assert long_diarization.events[-1][0] == "ok", long_diarization.events[-1]
    pids, before, after = long_diarization.pids, long_diarization.before, long_diarization.after
    grown = {pid: after[pid] - before[pid] for pid in before}
    shown = {
        name: {pid: f"{before[pid] / MiB:.0f} -> {after[pid] / MiB:.0f} MiB" for pid in group} for name, group in pids.items()
    }
    print(f"\nresident memory of the replicas before and after diarizing {LONG_MINUTES} minutes: {shown}")
    assert max(grown.values()) < GIVEN_BACK_WITHIN, shown
