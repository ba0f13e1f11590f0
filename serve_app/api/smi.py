"""`nvidia-smi` of every GPU node of the Ray cluster, for GET /smi."""

from __future__ import annotations

import asyncio
import subprocess

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["cluster_smi", "node_smi"]

NO_GPU = "no node of the cluster has a GPU\n"
SMI_TIMEOUT_S = 30
NODE_TIMEOUT_S = SMI_TIMEOUT_S + 10
"""How long a node's answer is waited for: nvidia-smi's own limit, and a task's start."""


@ray.remote(num_cpus=0)
def _nvidia_smi() -> str:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi could not run: {error}\n"


async def node_smi(node: dict) -> str:
    """The node's nvidia-smi, or a line saying why it did not answer: a node lost since Ray
    listed it (its task can never run), or one that answers too slowly, does not hold up the
    others' sections, nor turn the page into an error."""
    strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    output = _nvidia_smi.options(scheduling_strategy=strategy).remote()
    try:
        async with asyncio.timeout(NODE_TIMEOUT_S):
            return await output
    except TimeoutError:  # nvidia-smi ends itself within SMI_TIMEOUT_S: nothing to cancel
        return f"the node did not answer within {NODE_TIMEOUT_S} s\n"
    except RayError as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return f"the node did not answer ({type(error).__name__}: {reason}); it may have left the cluster\n"


async def cluster_smi() -> str:
    """Each GPU node's `nvidia-smi`, under a line naming the node; a line saying so where none has one."""
    listed = await asyncio.to_thread(ray.nodes)
    nodes = [node for node in listed if node["Alive"] and node["Resources"].get("GPU", 0) > 0]
    if not nodes:
        return NO_GPU
    outputs = await asyncio.gather(*(node_smi(node) for node in nodes))
    return "\n".join(
        f"== node {node['NodeManagerAddress']} ({node['NodeID'][:12]})\n{output}"
        for node, output in zip(nodes, outputs, strict=True)
    )
