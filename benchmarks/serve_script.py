"""The service as an operator starts it: `scripts/serve` on a copy of config.cpu.yaml whose port
is free and whose model and job folders are the caller's; its cold start (the script started
to the first 200 of a transcription) and the processes it runs, Ray's included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from serve_app.local import free_port, load_config
from serve_app.models.catalogue import ModelCatalogue
from serve_app.models.embedded import EMBEDDED_MODELS

ROOT = Path(__file__).resolve().parent.parent


def seed(model_dir: Path) -> None:
    """Write the embedded models into `model_dir` as the service's first start would, so that
    a cold start times a start, not the first one's copying."""
    ModelCatalogue(model_dir).seed(EMBEDDED_MODELS, required=())


class ScriptService:
    """`scripts/serve` running config.cpu.yaml with `model_dir` and a free port, at `url`."""

    def __init__(self, model_dir: Path, *, config_name: str = "config.cpu.yaml", **args: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._folder = Path(tempfile.mkdtemp(prefix="whisper-serve-bench-"))
        config = load_config(config_name)
        config["http_options"]["port"] = self.port
        app = config["applications"][0]
        app["args"] |= {"model_dir": str(model_dir), "job_store_dir": str(self._folder / "jobs"), **args}
        self.config = self._folder / "config.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = self._folder / "serve.log"
        self.process: subprocess.Popen | None = None
        self.ray_address = ""
        self.ray_pid = 0

    @property
    def roots(self) -> list[int]:
        """The script's process: it and its descendants are the service's processes, with
        those of the Ray it started (`groups`)."""
        return [self.process.pid] if self.process else []

    @property
    def groups(self) -> list[int]:
        """The process group of the script's Ray (scripts/ray-local)."""
        return [self.ray_pid] if self.ray_pid else []

    def start(self, media: Path, *, timeout: float = 300) -> float:
        """Start the script; the seconds until a transcription of `media` first answers 200."""
        environment = os.environ | {"HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "scripts" / "serve"), str(self.config)],
                stdout=subprocess.PIPE,
                stderr=log,
                env=environment,
                start_new_session=True,
            )
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = started + timeout
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"scripts/serve exited {self.process.returncode}: {self.log.read_text()[-3000:]}")
                try:
                    with media.open("rb") as file:
                        response = client.post("/v1/audio/transcriptions", files={"file": file}, data={"model": "tiny.en"})
                    if response.status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"no transcription in {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def _read_output(self) -> None:
        assert self.process and self.process.stdout
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            found = re.search(r"Ray at (\S+), process group (\d+)", line)
            if found:
                self.ray_address, self.ray_pid = found[1], int(found[2])
            with self.log.open("a") as log:
                log.write(line)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # as Ctrl-C: serve run shuts Serve down, the script stops Ray
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
