"""The job API through Ray Serve: real files in, outputs on disk, callbacks, restarts."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import ALT_ADMIN_KEY, CALLBACK_SECRET, LONG_TEXT
from media import SAMPLE_WAV, speak
from ray import serve
from receiver import Receiver
from subtitles import parse_srt, parse_vtt

from serve_app.api.smi import node_smi
from serve_app.jobs import SIGNATURE_HEADER, verify_signature
from serve_app.local import APP_NAME

pytestmark = pytest.mark.slow

FINISHED = ("COMPLETED", "FAILED")


def wait_for(client: httpx.Client, job_id: str, *, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/transcription/job/{job_id}").json())["status"] not in FINISHED:
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout:.0f}s: {job}"
        time.sleep(0.1)
    return job


@pytest.fixture
def media(job_folders: dict[str, Path]) -> Path:
    return job_folders["media"]


@pytest.fixture
def out(job_folders: dict[str, Path], request) -> Path:
    folder = job_folders["out"] / request.node.name
    folder.mkdir()
    return folder


def test_a_job_writes_all_five_outputs(client: httpx.Client, media: Path, out: Path) -> None:
    call = shutil.copy(SAMPLE_WAV, media / "call.wav")
    response = client.post(
        "/transcription/job", json={"path": str(call), "format": "all", "output_path": str(out), "language": "en"}
    )
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "QUEUED" and queued["progress"] == 0 and queued["Duration"] == 0
    assert queued["model"] == "tiny.en"

    job = wait_for(client, queued["id"])
    assert job["status"] == "COMPLETED", job
    assert job["progress"] == 100
    assert job["Duration"] > 0
    assert "Chicago" in job["result"]
    assert sorted(Path(p).name for p in job["outputs"]) == ["call.json", "call.srt", "call.tsv", "call.txt", "call.vtt"]
    assert sorted(p.name for p in out.iterdir()) == ["call.json", "call.srt", "call.tsv", "call.txt", "call.vtt"]

    whisper_json = json.loads((out / "call.json").read_text())
    assert set(whisper_json) == {"text", "segments", "language"} and whisper_json["language"] == "en"
    texts = [segment["text"].strip() for segment in whisper_json["segments"]]
    assert [c.text for c in parse_srt((out / "call.srt").read_text())] == texts
    assert [c.text for c in parse_vtt((out / "call.vtt").read_text())] == texts
    assert (out / "call.txt").read_text().splitlines() == texts
    header, *rows = (out / "call.tsv").read_text().splitlines()
    assert header == "start\tend\ttext"
    starts = [int(row.split("\t")[0]) for row in rows]
    assert starts == [round(segment["start"] * 1000) for segment in whisper_json["segments"]]


def test_progress_rises_while_a_job_runs(client: httpx.Client, media: Path, out: Path, long_english_wav: Path) -> None:
    talk = shutil.copy(long_english_wav, media / "talk.wav")
    job_id = client.post("/transcription/job", json={"path": str(talk), "output_path": str(out)}).json()["id"]
    seen = []
    deadline = time.monotonic() + 300
    while (job := client.get(f"/transcription/job/{job_id}").json())["status"] not in FINISHED:
        seen.append(job["progress"])
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "COMPLETED"
    assert seen == sorted(seen), "progress went backwards"
    assert any(0 < p < 100 for p in seen), f"no progress between 0 and 100 was seen: {sorted(set(seen))}"
    assert (out / "talk.txt").exists()


def test_the_callback_arrives_signed_after_two_failures(client: httpx.Client, media: Path, out: Path, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    call = shutil.copy(SAMPLE_WAV, media / "hook.wav")
    job_id = client.post(
        "/transcription/job", json={"path": str(call), "output_path": str(out), "callback": receiver.url}
    ).json()["id"]
    wait_for(client, job_id)
    deadline = time.monotonic() + 30
    while len(receiver.received) < 3:
        assert time.monotonic() < deadline, f"{len(receiver.received)} tries arrived"
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(receiver.received) == 3
    delivered = receiver.received[-1]
    assert delivered.headers["Content-Type"] == "application/json"
    assert verify_signature(delivered.body, delivered.headers[SIGNATURE_HEADER], CALLBACK_SECRET)
    body = json.loads(delivered.body)
    assert body["id"] == job_id and body["status"] == "COMPLETED" and "Chicago" in body["result"]


def test_a_failed_job_says_why_and_calls_back(client: httpx.Client, media: Path, out: Path, receiver: Receiver) -> None:
    broken = media / "broken.mp3"
    broken.write_bytes(b"ID3" + bytes(range(256)) * 8)
    job_id = client.post(
        "/transcription/job", json={"path": str(broken), "output_path": str(out), "callback": receiver.url}
    ).json()["id"]
    job = wait_for(client, job_id)
    assert job["status"] == "FAILED"
    assert "decode" in job["error"]
    deadline = time.monotonic() + 30
    while not receiver.received:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert json.loads(receiver.received[0].body)["status"] == "FAILED"
    assert list(out.iterdir()) == []


def test_an_undelivered_callback_says_why_on_the_job(client: httpx.Client, media: Path, out: Path, receiver: Receiver) -> None:
    receiver.statuses = [404]
    call = shutil.copy(SAMPLE_WAV, media / "refused.wav")
    job_id = client.post(
        "/transcription/job", json={"path": str(call), "output_path": str(out), "callback": receiver.url}
    ).json()["id"]
    wait_for(client, job_id)
    deadline = time.monotonic() + 30
    while not (job := client.get(f"/transcription/job/{job_id}").json())["callback_error"]:
        assert time.monotonic() < deadline, "the callback's outcome was not recorded"
        time.sleep(0.1)
    assert (job["status"], job["callback_error"]) == ("COMPLETED", "the receiver answered 404")
    assert len(receiver.received) == 1


def test_a_job_naming_a_model_not_present_downloads_it_first(client: httpx.Client, media: Path, out: Path) -> None:
    assert "tiny" not in {model["id"] for model in client.get("/v1/models").json()["models"]}
    call = shutil.copy(SAMPLE_WAV, media / "download.wav")
    response = client.post("/transcription/job", json={"path": str(call), "output_path": str(out), "model": "tiny"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    seen = set()
    deadline = time.monotonic() + 300
    while (job := client.get(f"/transcription/job/{job_id}").json())["status"] not in FINISHED:
        seen.add((job["status"], job["stage"]))
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ("RUNNING", "downloading model") in seen, seen
    assert (job["status"], job["model"], job["stage"]) == ("COMPLETED", "tiny", ""), job
    assert "Chicago" in job["result"]
    assert job["language"] == "en"  # detected, and recorded
    assert "tiny" in {model["id"] for model in client.get("/v1/models").json()["models"]}


def test_a_job_whose_model_the_hub_cannot_give_fails_with_the_reason(client: httpx.Client, media: Path, out: Path) -> None:
    call = shutil.copy(SAMPLE_WAV, media / "hub-down.wav")
    response = client.post("/transcription/job", json={"path": str(call), "output_path": str(out), "model": "medium.en"})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"])
    assert job["status"] == "FAILED"
    assert "answered 503 for Systran/faster-whisper-medium.en: try again later" in job["error"], job
    assert list(out.iterdir()) == []


def test_a_receiver_that_does_not_answer_does_not_delay_the_next_job(
    client: httpx.Client, media: Path, out: Path, receiver: Receiver
) -> None:
    receiver.statuses = [None] * 10  # every try held unanswered
    call = shutil.copy(SAMPLE_WAV, media / "held-hook.wav")
    hooked = client.post(
        "/transcription/job", json={"path": str(call), "output_path": str(out), "callback": receiver.url}
    ).json()["id"]
    after = client.post("/transcription/job", json={"path": str(call), "output_path": str(out)}).json()["id"]
    first, second = wait_for(client, hooked), wait_for(client, after)
    assert (first["status"], second["status"]) == ("COMPLETED", "COMPLETED")
    assert receiver.received, "the callback was not tried"
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["finished_at"])
    assert gap.total_seconds() < 1, f"the next job started {gap.total_seconds():.1f} s after the first ended"


def test_delete(client: httpx.Client, media: Path, out: Path, long_english_wav: Path) -> None:
    talk = shutil.copy(long_english_wav, media / "delete-me.wav")
    ids = [client.post("/transcription/job", json={"path": str(talk), "output_path": str(out)}).json()["id"] for _ in range(3)]
    running = ids[0]
    deadline = time.monotonic() + 60
    while client.get(f"/transcription/job/{running}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queued = ids[-1]
    assert client.delete(f"/transcription/job/{queued}").status_code == 204
    assert client.get(f"/transcription/job/{queued}").status_code == 404
    conflict = client.delete(f"/transcription/job/{running}")
    assert conflict.status_code == 409
    assert "only queued jobs can be deleted" in conflict.json()["reason"]
    assert wait_for(client, running)["status"] == "COMPLETED"
    assert client.delete(f"/transcription/job/{running}").status_code == 409
    assert client.delete("/transcription/job/00000000-0000-0000-0000-000000000000").status_code == 404
    wait_for(client, ids[1])


def test_a_burst_of_fifty_jobs(client: httpx.Client, media: Path, out: Path) -> None:
    clip = speak("Short job.", media / "short.wav", voice="en-us")
    before = client.get("/stats").json()
    ids = []
    for number in range(50):
        copy = shutil.copy(clip, media / f"short-{number:02d}.wav")
        ids.append(client.post("/transcription/job", json={"path": str(copy), "output_path": str(out)}).json()["id"])

    listing = client.get("/transcription/jobs").json()
    statuses = [job["status"] for job in listing]
    order = {"QUEUED": 0, "RUNNING": 1, "COMPLETED": 2, "FAILED": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses), statuses
    queued = [job["id"] for job in listing if job["status"] == "QUEUED"]
    assert queued == [i for i in ids if i in queued], "queued jobs are not listed in the order they will run"
    assert sum(s in FINISHED for s in statuses) <= 10

    for job_id in ids:
        assert wait_for(client, job_id)["status"] == "COMPLETED"
    after = client.get("/stats").json()
    assert after == {"Queued": 0, "Running": 0, "Processed": before["Processed"] + 50}
    finished = client.get("/transcription/jobs").json()
    assert len(finished) == 10
    assert [job["id"] for job in finished] == ids[::-1][:10]
    assert len(list(out.glob("short-*.txt"))) == 50


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"path": "/etc/passwd"}, 403, "outside"),
        ({"path": "{media}/../../../etc/passwd"}, 403, ""),
        ({"path": "{media}/escape"}, 403, "symbolic link"),
        ({"path": "{media}/missing.wav"}, 400, "does not exist"),
        ({"path": "{media}/ok.wav", "output_path": "/tmp"}, 403, "outside"),
        ({"path": "{media}/ok.wav", "language": "xx"}, 400, "language"),
        ({"path": "{media}/ok.wav", "format": "docx"}, 400, "format"),
        ({"path": "{media}/ok.wav", "model": "large-v9"}, 400, "model"),
        ({"path": "{media}/ok.wav", "language": "de"}, 400, "English-only"),
        ({"path": "{media}/ok.wav", "callback": "ftp://host/x"}, 400, "callback"),
        ({"path": "{media}/ok.wav", "callback": "http://169.254.169.254/latest/meta-data/"}, 403, "callback_hosts"),
        ({"path": "{media}/ok.wav", "callback": "http://localhost:8265/api/jobs/"}, 403, "callback_hosts"),
        ({"path": "{media}/ok.wav", "priority": "high"}, 400, "priority"),
        ({"path": "{media}/ok.wav", "colour": "blue"}, 400, "colour"),
        ({}, 400, "path"),
    ],
)
def test_bad_submissions_are_refused_at_once(
    client: httpx.Client, media: Path, body: dict, status: int, reason: str, tmp_path: Path
) -> None:
    shutil.copy(SAMPLE_WAV, media / "ok.wav")
    outside = tmp_path / "secret.wav"
    shutil.copy(SAMPLE_WAV, outside)
    (media / "escape").unlink(missing_ok=True)
    (media / "escape").symlink_to(outside)
    body = {key: value.format(media=media) if isinstance(value, str) else value for key, value in body.items()}
    before = client.get("/stats").json()
    response = client.post("/transcription/job", json=body)
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]
    assert client.get("/stats").json()["Queued"] == before["Queued"]


def test_malformed_json_is_refused(client: httpx.Client) -> None:
    response = client.post("/transcription/job", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["reason"]


def test_smi_says_there_is_no_gpu(client: httpx.Client) -> None:
    response = client.get("/smi")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "no node of the cluster has a GPU\n"


def test_smi_says_a_node_that_cannot_answer_did_not(service) -> None:
    """A GPU node lost after Ray listed it (tests/test_cluster.py loses a real one): its
    section says so, rather than the page failing."""
    text = asyncio.run(node_smi({"NodeID": "ab" * 28}))
    assert text.startswith("the node did not answer (TaskUnschedulableError"), text


def test_the_job_api_is_off_unless_folders_are_configured(alt: str) -> None:
    keyed = {"Authorization": f"Bearer {ALT_ADMIN_KEY}"}
    response = httpx.post(f"{alt}/transcription/job", json={"path": str(SAMPLE_WAV)}, headers=keyed, timeout=30)
    assert response.status_code == 403
    assert "job API is off" in response.json()["reason"]
    assert httpx.get(f"{alt}/stats", headers=keyed, timeout=30).status_code == 403
    # Nothing runs for it: the alt app has no JobQueue replica, the main app (jobs on) has one.
    applications = serve.status().applications
    assert "JobQueue" not in applications["alt"].deployments
    assert "JobQueue" in applications[APP_NAME].deployments


def test_jobs_survive_a_restart_of_serve_and_ray(service, media: Path, out: Path, long_english_wav: Path) -> None:
    client = httpx.Client(base_url=service.url, timeout=60)
    # The first job long enough (ten minutes) to be running still when Serve and Ray stop.
    talks = [speak(" ".join([LONG_TEXT] * 20), media / "restart-0.wav", voice="en-us", speed=150)]
    talks += [shutil.copy(long_english_wav, media / f"restart-{number}.wav") for number in (1, 2)]
    ids = []
    for talk in talks:
        ids.append(client.post("/transcription/job", json={"path": str(talk), "output_path": str(out)}).json()["id"])
    deadline = time.monotonic() + 60
    while client.get(f"/transcription/job/{ids[0]}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    service.restart()

    client = httpx.Client(base_url=service.url, timeout=60)
    jobs = [wait_for(client, job_id) for job_id in ids]
    assert [job["status"] for job in jobs] == ["COMPLETED"] * 3, jobs
    assert jobs[0]["attempts"] == 2, "the job running at the restart was not run again"
    assert sorted(p.name for p in out.iterdir()) == ["restart-0.txt", "restart-1.txt", "restart-2.txt"]
