"""A Ray cluster of three nodes on this host, the app deployed across it, and a node lost in the
middle of a job: tests/test_cluster.py runs this in a process of its own, so that its Ray (its
own temp folder, its own ports) stays apart from the test session's, and asserts on the JSON it
writes.

    python tests/simulated_cluster.py plan.json result.json

    head    Serve's controller and proxy (HeadOnly: the HTTP port), Ingress, ModelStore, Diarizer
    node B  a Transcriber replica and the JobQueue, and a GPU it declares: the node that dies
    node A  the other Transcriber replica; it joins once the JobQueue is placed on B, and is where
            Serve starts the JobQueue again

Placement is by custom resources (`ray_actor_options.resources`): only B and A hold `transcriber`
and `job_host`, only the head holds `head`. B's GPU is a resource Ray counts, not a card: /smi
must list B while it lives (with what nvidia-smi said there) and say no node has a GPU once B
is gone. The model folder is one path every node sees, as on a cluster with a shared volume.

"In the middle of a job": the long job is RUNNING and its progress is above 0 (segments have
come back), and B's Transcriber likely holds an HTTP request too (mid_job), when B's raylet
and every process under it are killed, at once, as a power cut would.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEAD, TRANSCRIBER_SLOT, JOB_HOST = "head", "transcriber", "job_host"
REQUEST_TIMEOUT_S = 120  # a request that takes longer counts as hung


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def place(app: dict[str, Any]) -> None:
    """Pin each deployment to its nodes; two Transcriber replicas, one a node with the slot."""
    if not any(deployment["name"] == "JobQueue" for deployment in app["deployments"]):
        app["deployments"].append({"name": "JobQueue"})  # the job API is on: listed to be pinned, as config.yaml says
    for deployment in app["deployments"]:
        name = deployment["name"]
        options = deployment.setdefault("ray_actor_options", {})
        if name == "Transcriber":
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 2
            options.update(num_cpus=1, resources={TRANSCRIBER_SLOT: 1})  # one engine thread each
        elif name == "JobQueue":
            options.update(num_cpus=0, resources={JOB_HOST: 1})
        else:
            options.update(num_cpus=0, resources={HEAD: 1})


class Traffic:
    """`clients` threads, each sending one clip after another to the transcription route
    until stopped; every answer recorded with when it was asked and answered."""

    def __init__(self, url: str, clip: Path, clients: int, clock: Callable[[], float]) -> None:
        self.url, self.audio, self.clock = url, clip.read_bytes(), clock
        self.answers: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 10)

    def _client(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as http:
            while not self._stop.is_set():
                asked = self.clock()
                answer: dict[str, Any] = {"asked": asked}
                try:
                    response = http.post(
                        "/v1/audio/transcriptions", files={"file": ("clip.wav", self.audio)}, data={"model": "tiny.en"}
                    )
                    answer |= {"status": response.status_code, "retry_after": response.headers.get("Retry-After")}
                    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
                    answer |= {"reason": body.get("reason", ""), "text": body.get("text", "")}
                except Exception as error:  # a hang (timeout) or a broken connection: what the user saw
                    answer |= {"status": 0, "reason": repr(error)}
                answer["answered"] = self.clock()
                self.answers.append(answer)


def started(what: str, start: Callable[[], Any], *, tries: int = 3) -> Any:
    """`start()` (a node), tried again if it timed out: Ray gives a new node a fixed 30 s to
    register with the GCS, which a host shared with other test runs can exceed. The processes
    a failed try left are ended first (those of the nodes already up are kept)."""
    import psutil

    before = {process.pid for process in psutil.Process().children()}  # the nodes up: their processes
    for attempt in range(1, tries + 1):
        try:
            return start()
        except Exception as error:
            if "timed out during startup" not in str(error) or attempt == tries:
                raise
            log(f"{what}: {error}; once more")
            roots = [process for process in psutil.Process().children() if process.pid not in before]
            left = [*roots, *(child for root in roots for child in root.children(recursive=True))]
            for process in left:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(left, timeout=30)


def kill_node(cluster: Any, node: Any) -> list[int]:
    """Kill the node's raylet and every process under it (its workers: the replicas) at once,
    then let the cluster forget it. The pids killed."""
    import psutil
    from ray._private import ray_constants

    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    doomed = [*raylet.children(recursive=True), raylet]
    for process in doomed:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    cluster.remove_node(node, allow_graceful=False)
    return [process.pid for process in doomed]


def run(plan: dict[str, Any]) -> dict[str, Any]:
    import httpx
    import ray
    from ray import serve
    from ray._private import state
    from ray.cluster_utils import Cluster
    from ray.serve.schema import ReplicaState

    from serve_app.jobs import JobStore
    from serve_app.local import LocalService, free_ports

    began = time.monotonic()

    def clock() -> float:
        return round(time.monotonic() - began, 2)

    result: dict[str, Any] = {"timeline": {}}

    def mark(event: str) -> None:
        result["timeline"][event] = clock()
        log(event)

    # Free ports for what would take fixed ones, beside another Ray on this host (the test session's).
    dashboard, agent = free_ports(2)
    head_args = {"dashboard_port": dashboard, "dashboard_agent_listen_port": agent, "include_dashboard": False}
    cluster = started(
        "the head", lambda: Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {HEAD: 100}, **head_args})
    )
    try:
        node_b = started("node B", lambda: cluster.add_node(num_cpus=1, num_gpus=1, resources={TRANSCRIBER_SLOT: 1, JOB_HOST: 1}))
        ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
        nodes = {"head": cluster.head_node.node_id, "b": node_b.node_id}
        mark("cluster of head and B up")

        service = LocalService(
            model_dir=Path(plan["model_dir"]),
            job_media_folders=[plan["media"]],
            job_output_folders=[plan["out"]],
            job_store_url=plan["store_url"],
            job_lease_s=plan["lease_s"],
            callback_hosts=["127.0.0.1"],
            callback_backoff_s=0.2,
        )
        service.config["proxy_location"] = "HeadOnly"  # every node is on 127.0.0.1: one proxy, on the head
        place(service.apps[0])
        service.start(timeout=300)
        mark("app healthy")

        def replicas(deployment: str) -> list[dict[str, Any]]:
            return [
                actor
                for actor in state.actors().values()
                if actor["ActorClassName"] == f"ServeReplica:whisper:{deployment}" and actor["State"] == "ALIVE"
            ]

        wait_for(
            "the JobQueue running on B", lambda: [a for a in replicas("JobQueue") if a["Address"]["NodeID"] == nodes["b"]], 120
        )
        node_a = started("node A", lambda: cluster.add_node(num_cpus=1, resources={TRANSCRIBER_SLOT: 1, JOB_HOST: 1}))
        nodes["a"] = node_a.node_id

        def transcribers_running() -> int:
            deployment = serve.status().applications["whisper"].deployments["Transcriber"]
            return deployment.replica_states.get(ReplicaState.RUNNING, 0)

        wait_for("two Transcriber replicas running", lambda: transcribers_running() == 2, 240)
        result["nodes"] = nodes
        result["placed"] = {
            name: sorted(actor["Address"]["NodeID"] for actor in replicas(name))
            for name in ("Ingress", "ModelStore", "Diarizer", "JobQueue", "Transcriber")
        }
        mark("node A joined: two Transcribers")

        http = httpx.Client(base_url=service.url, timeout=REQUEST_TIMEOUT_S)

        def smi() -> dict[str, Any]:
            asked = time.monotonic()
            response = http.get("/smi")
            return {"status": response.status_code, "text": response.text, "seconds": round(time.monotonic() - asked, 2)}

        result["smi_before"] = smi()

        def submit(path: str, **fields: Any) -> str:
            response = http.post("/transcription/job", json={"path": path, "callback": plan["callback_url"], **fields})
            response.raise_for_status()
            return response.json()["id"]

        traffic = Traffic(service.url, Path(plan["request_clip"]), plan["clients"], clock)
        traffic.start()
        long_job = submit(plan["long_job"], priority=2000)  # claimed first
        short_jobs = [submit(path) for path in plan["short_jobs"]]
        result["job_ids"] = {"long": long_job, "short": short_jobs}
        mark("jobs submitted, traffic running")

        [b_transcriber] = [a["Name"] for a in replicas("Transcriber") if a["Address"]["NodeID"] == nodes["b"]]
        b_replica = ray.get_actor(b_transcriber, namespace="serve")

        looks_in_middle = 0

        def mid_job() -> dict[str, Any] | None:
            """The long job, once it is in its middle, at a moment when B's Transcriber holds two
            requests, so that likely one of them is an HTTP request (the job makes one at a time).
            Serve routes by queue length, not to a chosen replica, so that moment may not come
            before the job ends: after 15 looks at the job in its middle, it is killed anyway."""
            nonlocal looks_in_middle
            job = http.get(f"/transcription/job/{long_job}").json()
            if job["status"] not in ("QUEUED", "RUNNING"):
                raise RuntimeError(f"the long job ended before B could be killed in its middle: {job}")
            if job["status"] != "RUNNING" or job["progress"] == 0:
                return None
            looks_in_middle += 1
            result["b_busy_at_kill"] = ray.get(b_replica.get_num_ongoing_requests.remote(), timeout=30)
            return job if result["b_busy_at_kill"] >= 2 or looks_in_middle >= 15 else None

        result["long_job_at_kill"] = wait_for("the long job in its middle, B's Transcriber busy", mid_job, 240, every=0.1)
        result["job_queue_node_at_kill"] = [actor["Address"]["NodeID"] for actor in replicas("JobQueue")]
        killed_at, result["killed_at_unix"] = time.monotonic(), time.time()
        result["killed_at"] = round(killed_at - began, 2)
        result["killed_pids"] = kill_node(cluster, node_b)
        mark("node B killed")

        result["smi_after_kill"] = smi()
        mark("/smi answered after the kill")

        # The surviving Transcriber carries the traffic; stopped before the jobs are waited for,
        # so that they run again without it.
        wait_for(
            "requests asked after the kill answered",
            lambda: sum(answer["asked"] > result["killed_at"] for answer in traffic.answers) >= 2 * plan["clients"],
            180,
        )
        traffic.stop()
        result["requests"] = sorted(traffic.answers, key=lambda answer: answer["asked"])
        mark("traffic stopped")

        def finished(job_id: str) -> dict[str, Any] | None:
            job = http.get(f"/transcription/job/{job_id}").json()
            return job if job["status"] in ("COMPLETED", "FAILED") else None

        jobs = {job_id: wait_for(f"job {job_id} ending", lambda j=job_id: finished(j), 300) for job_id in [long_job, *short_jobs]}
        result["jobs"] = jobs
        mark("every job ended")
        result["job_queue_node_after"] = [actor["Address"]["NodeID"] for actor in replicas("JobQueue")]
        # The callbacks, sent by now; but one that B's JobQueue had taken to send when it died
        # is held for 100 s (scheduler.py: callback_hold_s) before another replica sends it.
        with JobStore(plan["store_url"]) as store:
            try:
                wait_for("every callback delivered", lambda: not store.pending_callbacks(), 20)
            except TimeoutError:
                pass
            result["callbacks_pending"] = [pending.job_id for pending in store.pending_callbacks()]
        mark("callbacks delivered")

        wait_for("B marked dead", lambda: not any(n["Alive"] for n in ray.nodes() if n["NodeID"] == nodes["b"]), 120)
        result["smi_end"] = smi()
        result["outputs"] = sorted(str(path.relative_to(plan["out"])) for path in Path(plan["out"]).rglob("*"))
        http.close()
        mark("done")
        return result
    finally:
        try:
            serve.shutdown()
        except Exception as error:
            log(f"serve.shutdown: {error!r}")
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    plan_path, result_path = sys.argv[1:3]
    plan = json.loads(Path(plan_path).read_text())
    # Ray's files, sockets and `ray_current_cluster` in a folder of this run's own (short:
    # socket paths are limited), so that no other ray.init() on the host finds this cluster.
    ray_tmp = tempfile.mkdtemp(prefix="wsc-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ.pop("RAY_ADDRESS", None)
    # The nodes' workers take this process's environment: they import the app from this tree.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT))
    try:
        result = run(plan)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    Path(result_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
