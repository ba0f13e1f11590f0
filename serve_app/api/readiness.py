"""Whether the deployments a request needs can take it, and if not, a sentence saying why.

A replica that asks for resources no node of the cluster has (`num_gpus: 1` on a host with no
GPU) would stay pending for ever, and requests to it would hang; instead health answers 503
with the reason and requests fail at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

import ray
from ray import serve
from ray.serve.schema import ReplicaState

from serve_app.errors import Unavailable

__all__ = ["Readiness", "fits_some_node"]


def fits_some_node(required: Mapping[str, float], nodes: Iterable[Mapping[str, float]]) -> bool:
    """Whether any node's total resources cover `required` (a replica's resource request)."""
    return any(all(node.get(name, 0.0) >= amount for name, amount in required.items() if amount > 0) for node in nodes)


def _never_schedulable(app_name: str, deployment: str) -> dict[str, float] | None:
    """The resources of a pending replica of `deployment` that no alive node could ever give."""
    from ray.util.state import list_actors

    pending = list_actors(
        address=ray.get_runtime_context().gcs_address,  # this cluster, even where a host runs several
        filters=[("class_name", "=", f"ServeReplica:{app_name}:{deployment}"), ("state", "=", "PENDING_CREATION")],
        detail=True,
        raise_on_missing_output=False,
    )
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for actor in pending:
        required = actor.required_resources or {}
        if required and not fits_some_node(required, nodes):
            return required
    return None


def _reason(app_name: str, deployments: Iterable[str]) -> str | None:
    statuses = serve.status().applications[app_name].deployments
    for name in deployments:
        status = statuses.get(name)
        if status is not None and status.replica_states.get(ReplicaState.RUNNING, 0) > 0:
            continue
        try:
            required = _never_schedulable(app_name, name)
        except Exception:  # the state API needs the dashboard, which a cluster may run without
            required = None
        if required is not None:
            return (
                f"{name} can never be scheduled: each replica asks for {required}, and no node of the "
                "cluster has that much (on a host without a GPU, run config.cpu.yaml)"
            )
        detail = f" ({status.message})" if status is not None and status.message else ""
        return f"{name} has no running replica yet{detail}; try again shortly"
    return None


class Readiness:
    """Cached answers to 'can these deployments take work', each refreshed at most every `ttl` seconds."""

    def __init__(self, app_name: str, *, ttl: float = 2.0) -> None:
        self.app_name = app_name
        self.ttl = ttl
        self._answers: dict[tuple[str, ...], tuple[float, str | None]] = {}
        self._lock = asyncio.Lock()

    async def reason(self, deployments: tuple[str, ...]) -> str | None:
        """None when each of `deployments` has a running replica, else why not."""
        async with self._lock:
            checked_at, reason = self._answers.get(deployments, (-float("inf"), None))
            if time.monotonic() - checked_at > self.ttl:
                reason = await asyncio.to_thread(_reason, self.app_name, deployments)
                self._answers[deployments] = (time.monotonic(), reason)
        return reason

    async def require(self, deployments: tuple[str, ...]) -> None:
        """Raise Unavailable (503, with the reason) unless each of `deployments` can take work."""
        reason = await self.reason(deployments)
        if reason is not None:
            raise Unavailable(reason)
