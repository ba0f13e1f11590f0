"""scripts/ray-local, the Ray that scripts/serve starts: a client without the user's token is
refused, its Prometheus metrics are on the port WHISPER_SERVE_METRICS_PORT names, and
stopping it stops that Ray's processes (issue 13, Ray's own ports); and scripts/serve over it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from serve_app.local import free_port

ROOT = Path(__file__).resolve().parent.parent
CONNECT = "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); print(int(ray.cluster_resources()['CPU']))"

pytestmark = pytest.mark.slow


def connect(address: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"RAY_AUTH_MODE": "token"} | env
    return subprocess.run([sys.executable, "-c", CONNECT, address], env=environment, capture_output=True, text=True, timeout=120)


def scrape(url: str, *, within_s: float = 120) -> str:
    """The metrics page, once Ray's agent serves it (it starts after Ray takes drivers)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return httpx.get(url, timeout=10).text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def group(pgid: int) -> list[psutil.Process]:
    """The processes of the process group and their descendants (Ray's workers have groups of their own)."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                for member in [process, *process.children(recursive=True)]:
                    found[member.pid] = member
        except (OSError, psutil.Error):
            continue
    return list(found.values())


def test_rays_ports_refuse_a_client_without_the_token_and_stop_with_the_script(tmp_path: Path) -> None:
    metrics_port = free_port()
    started = subprocess.run(
        [ROOT / "scripts" / "ray-local"],
        env=os.environ | {"WHISPER_SERVE_METRICS_PORT": str(metrics_port)},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    address, pgid, folder = started.stdout.split()
    try:
        assert "ray_" in scrape(f"http://127.0.0.1:{metrics_port}/metrics"), "no metrics on WHISPER_SERVE_METRICS_PORT"
        assert (Path(folder) / "session_latest" / "logs").is_dir(), "scripts/serve follows the logs there"
        owner = connect(address)
        assert owner.returncode == 0, owner.stderr[-2000:]
        assert int(owner.stdout.split()[-1]) >= 1

        stranger_home = tmp_path / "stranger"
        stranger_home.mkdir()
        for env in ({"HOME": str(stranger_home)}, {"HOME": str(stranger_home), "RAY_AUTH_TOKEN": "0" * 32}):
            stranger = connect(address, **env)
            assert stranger.returncode != 0, f"a client with {env} joined the cluster"
            assert "Authentication" in stranger.stderr or "Failed to connect" in stranger.stderr, stranger.stderr[-2000:]
        processes = group(int(pgid))
        names = {p.name() for p in processes}
        assert {"gcs_server", "raylet"} <= names
        assert not any("autoscaler" in " ".join(p.cmdline()) for p in processes), "a one-host Ray runs no autoscaler"
    finally:
        # as scripts/serve stops it: TERM, then KILL what is left after 10 s (the GCS server
        # outlives a TERM)
        os.killpg(int(pgid), signal.SIGTERM)
        psutil.wait_procs(processes, timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pgid), signal.SIGKILL)
    _gone, alive = psutil.wait_procs(processes, timeout=60)
    running = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]  # stopped, not yet reaped by init
    assert running == [], f"still running after the script stopped: {[p.name() for p in running]}"


def test_scripts_serve_answers_shows_the_replicas_logs_and_stops_whole_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from media import SAMPLE_WAV
    from serve_script import ScriptService, seed

    seed(tmp_path / "models")
    monkeypatch.setenv("WHISPER_SERVE_METRICS_PORT", str(free_port()))
    service = ScriptService(tmp_path / "models")
    processes: list[psutil.Process] = []
    try:
        service.start(SAMPLE_WAV)  # a transcription answered 200
        processes = [process for pgid in service.groups for process in group(pgid)]
        processes += psutil.Process(service.roots[0]).children(recursive=True)
        commands = [" ".join(process.cmdline()) for process in processes]
        assert not any("serve run" in command for command in commands), "serve run --non-blocking stays no longer"
        deadline = time.monotonic() + 30
        while "whisper_Transcriber" not in service.log.read_text() and time.monotonic() < deadline:
            time.sleep(1)
        assert "whisper_Transcriber" in service.log.read_text(), "the replicas' log lines are followed on the script's output"
    finally:
        service.stop()  # SIGINT to the script's group, as Ctrl-C in a terminal
    _gone, alive = psutil.wait_procs(processes, timeout=60)
    running = [" ".join(p.cmdline())[:120] for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert running == [], f"still running after Ctrl-C (Ray's processes, the log followers): {running}"
