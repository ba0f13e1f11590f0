"""Run the application from a config on a local Ray, from Python: for tests and benchmarks.

The config is deployed the way `serve run config.cpu.yaml` deploys it (Serve's declarative
path, through the same client calls), with the HTTP port and the app's args overridable.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import ray
import yaml
from ray import serve
from ray.serve._private import api as serve_api
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "whisper"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now: each socket stays bound until all are, or the OS may hand one port out twice."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port() -> int:
    return free_ports(1)[0]


def load_config(name: str = "config.cpu.yaml") -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def application(config: dict[str, Any], *, name: str = APP_NAME, route_prefix: str = "/", **args: Any) -> dict[str, Any]:
    """The config's one application, renamed and with `args` overriding its args."""
    app = copy.deepcopy(config["applications"][0])
    app["name"], app["route_prefix"] = name, route_prefix
    app["args"] = app.get("args", {}) | {key: str(value) if isinstance(value, Path) else value for key, value in args.items()}
    return app


class LocalService:
    """The application of `config_name`, with `args` overriding its args, on a local Ray;
    reached over HTTP at `url` once `start` returns."""

    def __init__(self, *, model_dir: Path, config_name: str = "config.cpu.yaml", port: int | None = None, **args: Any) -> None:
        self.model_dir = model_dir
        self._port = port
        self.config = load_config(config_name)
        self.apps = [application(self.config, model_dir=model_dir, **args)]

    def start(self, *, timeout: float = 240) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            ray.init(namespace="serve", num_cpus=os.cpu_count(), log_to_driver=False)
        if self._port is None:
            # Chosen once Ray's processes have taken theirs: chosen before, one of them may take it.
            self._port = free_port()
        self._serve = serve_api.serve_start(
            http_options={"host": "127.0.0.1", "port": self.port}, proxy_location=self.config.get("proxy_location")
        )
        self.deploy(self.apps)
        self.wait_healthy(timeout=timeout)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the service has no port before it starts")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def deploy(self, apps: list[dict[str, Any]]) -> None:
        config = {key: value for key, value in self.config.items() if key != "http_options"}
        schema = ServeDeploySchema.model_validate(config | {"applications": apps})
        self._serve.deploy_apps(schema, _blocking=False)

    def wait_healthy(self, *, prefix: str = "", timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.url}{prefix}/v1/health", timeout=5)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(1)
        status = serve.status().applications.get(APP_NAME)
        raise RuntimeError(f"the service did not become healthy in {timeout:.0f}s: {last}; serve status: {status}")

    @property
    def metrics_url(self) -> str:
        """Where Ray's Prometheus endpoint of this host's node serves every process's metrics."""
        node = next(node for node in ray.nodes() if node["Alive"])
        return f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"

    def stop(self) -> None:
        serve.shutdown()
        ray.shutdown()

    def restart(self, *, timeout: float = 240) -> None:
        """Stop Serve and Ray, as an outage would, then start both again with the same config."""
        self.stop()
        self.start(timeout=timeout)
