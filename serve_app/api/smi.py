"""`nvidia-smi` of every GPU node of the Ray cluster, for GET /smi."""

from __future__ import annotations

import subprocess

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["cluster_smi"]

NO_GPU = "no node of the cluster has a GPU\n"


@ray.remote(num_cpus=0)
def _nvidia_smi() -> str:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi could not run: {error}\n"


async def cluster_smi() -> str:
    """Each GPU node's `nvidia-smi`, under a line naming the node; a line saying so where none has one."""
    nodes = [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("GPU", 0) > 0]
    if not nodes:
        return NO_GPU
    outputs = [
        _nvidia_smi.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in nodes
    ]
    sections = []
    for node, output in zip(nodes, outputs, strict=True):
        sections.append(f"== node {node['NodeManagerAddress']} ({node['NodeID'][:12]})\n{await output}")
    return "\n".join(sections)
