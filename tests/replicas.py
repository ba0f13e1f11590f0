"""The processes of a running app's replicas, and their memory as the kernel counts it."""

from __future__ import annotations

from pathlib import Path

import ray
from ray.util.state import list_actors

MiB = 1024 * 1024


def replica_pids(deployment: str, *, app: str = "whisper") -> list[int]:
    """The process ids of the deployment's live replicas (the Ray of this process: others may run
    on the same host)."""
    actors = list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", f"ServeReplica:{app}:{deployment}"), ("state", "=", "ALIVE")],
    )
    return sorted(actor.pid for actor in actors)


def memory(pid: int) -> dict[str, int]:
    """The process's resident memory, in bytes: `rss` in all, `anon` its own (the heaps), `shmem`
    the shared memory it maps that is resident (Ray's object store among it)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    named = (("rss", "VmRSS"), ("anon", "RssAnon"), ("shmem", "RssShmem"))
    return {name: int(fields[field].split()[0]) * 1024 for name, field in named}
