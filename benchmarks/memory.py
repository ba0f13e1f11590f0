"""The memory of a running service: PSS summed over every one of its processes, Ray's included.

PSS (proportional set size, from /proc/PID/smaps_rollup) charges each page shared between
processes (the Python interpreter, torch's libraries, Ray's) in equal parts to the processes
that map it, so the sum over processes is what the service takes from the machine; summed
RSS counts a shared page once per process.

Each process is named for what it is: a Ray worker by its process title (`ray::ServeReplica:
whisper:Transcriber` becomes `Transcriber`, `ray::ServeController` `controller`, `ray::IDLE`
an idle worker), Ray's daemons and scripts by their program (`gcs_server`, `raylet`,
`dashboard`, ...), the rest by their command.

    .venv/bin/python benchmarks/memory.py PID [-PGID ...]   # what those processes (and groups) and theirs hold now
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

import psutil

MiB = 1024**2
GiB = 1024**3

_RAY_TITLES = {
    "ServeController": "controller",
    "ProxyActor": "proxy",
    "IDLE": "ray worker (idle)",
    "DashboardAgent": "dashboard agent",
    "RuntimeEnvAgent": "runtime env agent",
}
_RAY_PROGRAMS = {
    # a word of the command line: the name it gets
    "gcs_server": "gcs_server",
    "raylet": "raylet",
    "dashboard/dashboard.py": "dashboard",
    "dashboard/agent.py": "dashboard agent",
    "runtime_env/agent/main.py": "runtime env agent",
    "log_monitor.py": "log monitor",
    "autoscaler/_private/monitor.py": "autoscaler monitor",
    "default_worker.py": "ray worker (starting)",
}


def pss_bytes(pid: int) -> int:
    """The process's PSS in bytes; 0 for a process gone or not ours to read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def role(process: psutil.Process) -> str:
    """What the process is, in a few words."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return "gone"
    if not command:
        return process.name()
    if command[0].startswith("ray::"):
        # ray::CLASS, or ray::CLASS.METHOD while it runs a method
        title = command[0].removeprefix("ray::").split()[0].split(".")[0]
        if title.startswith("ServeReplica:"):
            return title.rsplit(":", 1)[-1]  # ServeReplica:APP:DEPLOYMENT
        return _RAY_TITLES.get(title, title)
    joined = " ".join(command)
    for word, name in _RAY_PROGRAMS.items():
        if word in joined:
            return name
    for part in command[:3]:
        if part.endswith("scripts/serve"):
            return "scripts/serve"
        if os.path.basename(part) in ("serve", "ray"):
            verb = next((word for word in command[command.index(part) + 1 :] if not word.startswith("-")), "")
            return f"{os.path.basename(part)} {verb}".strip()
    return " ".join(os.path.basename(part) for part in command[:2])


def group_members(group: int) -> list[int]:
    """The processes of a process group (whose leader may have exited)."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == group:
                found.append(pid)
        except OSError:
            continue
    return found


def service_processes(roots: Iterable[int], groups: Iterable[int] = ()) -> list[psutil.Process]:
    """The processes `roots` name, those of the process `groups`, and all their descendants, each once."""
    seen: dict[int, psutil.Process] = {}
    for pid in [*roots, *(member for group in groups for member in group_members(group))]:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                seen.setdefault(process.pid, process)
        except psutil.Error:
            continue
    return list(seen.values())


class Snapshot:
    """PSS by role at one moment: `by_role` in bytes, `counts` of processes."""

    def __init__(self, processes: Iterable[psutil.Process]) -> None:
        self.by_role: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        for process in processes:
            pss = pss_bytes(process.pid)
            if pss:
                name = role(process)
                self.by_role[name] += pss
                self.counts[name] += 1

    @property
    def total(self) -> int:
        return sum(self.by_role.values())

    @property
    def processes(self) -> int:
        return sum(self.counts.values())


def snapshot(roots: Iterable[int], groups: Iterable[int] = ()) -> Snapshot:
    return Snapshot(service_processes(roots, groups))


class PeakWatch:
    """The peak PSS of the processes of `roots`, the whole and each role's (each at its own
    moment), sampled every `interval` seconds until `stop`."""

    def __init__(self, roots: Iterable[int], groups: Iterable[int] = (), *, interval: float = 0.5) -> None:
        self.roots, self.groups = list(roots), list(groups)
        self.peak_total = 0
        self.peak_by_role: Counter[str] = Counter()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            now = snapshot(self.roots, self.groups)
            self.peak_total = max(self.peak_total, now.total)
            for name, pss in now.by_role.items():
                self.peak_by_role[name] = max(self.peak_by_role[name], pss)
            if self._stop.wait(self._interval):
                return

    def stop(self) -> PeakWatch:
        self._stop.set()
        self._thread.join()
        return self


def table(columns: dict[str, Mapping[str, int]], counts: Mapping[str, int], order: Iterable[str] = ()) -> str:
    """Roles down, `columns` (title: PSS by role) across, in MiB, the service's deployments
    (`order`) first, then the rest largest first, then the sum of each column."""
    first = [name for name in order if any(name in column for column in columns.values())]
    largest = max(columns.values(), key=lambda column: sum(column.values()))
    rest = sorted((name for column in columns.values() for name in column if name not in first), key=lambda n: -largest.get(n, 0))
    names = list(dict.fromkeys([*first, *rest]))
    width = max(len(name) for name in [*names, "the whole service"]) + 6
    lines = [f"{'PSS, MiB':<{width}}" + "".join(f"{title:>14}" for title in columns)]
    for name in names:
        label = f"{name} (x{counts[name]})" if counts.get(name, 0) > 1 else name
        lines.append(f"{label:<{width}}" + "".join(f"{column.get(name, 0) / MiB:>14.0f}" for column in columns.values()))
    lines.append(
        f"{'the whole service':<{width}}" + "".join(f"{sum(column.values()) / MiB:>14.0f}" for column in columns.values())
    )
    return "\n".join(lines)


def main() -> None:
    ids = [int(arg) for arg in sys.argv[1:]]
    now = snapshot([pid for pid in ids if pid > 0], [-pid for pid in ids if pid < 0])
    print(table({"now": now.by_role}, now.counts))
    print(f"{now.processes} processes, {now.total / GiB:.2f} GiB")


if __name__ == "__main__":
    main()
