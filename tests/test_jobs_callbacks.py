"""Callbacks against a real HTTP receiver on 127.0.0.1 (named in callback_hosts, as loopback
must be): body, signature, retries, giving up, and the outcome recorded on the job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import RecordedMetrics
from receiver import Receiver

from serve_app.errors import BadRequest, Forbidden
from serve_app.jobs import (
    SIGNATURE_HEADER,
    CallbackSettings,
    Job,
    JobStatus,
    JobStore,
    callback_body,
    check_callback,
    deliver_pending,
    send_callback,
    sign,
    verify_signature,
)
from serve_app.local import free_port
from serve_app.metrics import CALLBACKS

SECRET = "s3cret-shared-with-the-receiver"
LOCAL = ["127.0.0.1"]
QUICK = CallbackSettings(secret=SECRET, allowed_hosts=LOCAL, tries=4, backoff=0.01, timeout=5)


def finished_job(callback: str) -> Job:
    return Job(
        path="/data/media/a.mp3",
        output_path="/data/out",
        model="tiny.en",
        callback=callback,
        status=JobStatus.COMPLETED,
        progress=100,
        result="Hello there.",
        outputs=["/data/out/a.txt"],
        duration=3.5,
        attempts=1,
        created_at=1_700_000_000.0,
        started_at=1_700_000_001.0,
        finished_at=1_700_000_004.5,
    )


def test_the_receiver_gets_the_job_json_signed(receiver: Receiver) -> None:
    job = finished_job(receiver.url)
    delivery = send_callback(job, QUICK)
    assert (delivery.delivered, delivery.tries, delivery.status) == (True, 1, 200)
    (request,) = receiver.received
    assert request.path == "/hooks/job"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == job.to_json()
    assert json.loads(request.body)["status"] == "COMPLETED"
    assert verify_signature(request.body, request.headers[SIGNATURE_HEADER], SECRET)
    assert request.headers[SIGNATURE_HEADER].startswith("sha256=")


def test_a_failed_job_is_called_back_with_its_reason(receiver: Receiver) -> None:
    job = finished_job(receiver.url)
    job.status, job.error, job.result = JobStatus.FAILED, "the media has no audio stream", ""
    assert send_callback(job, QUICK).delivered
    body = json.loads(receiver.received[0].body)
    assert (body["status"], body["error"]) == ("FAILED", "the media has no audio stream")


def test_without_a_secret_nothing_is_signed(receiver: Receiver) -> None:
    assert send_callback(finished_job(receiver.url), CallbackSettings(allowed_hosts=LOCAL, backoff=0.01)).delivered
    assert SIGNATURE_HEADER not in receiver.received[0].headers


def test_the_signature_fails_for_another_body_or_secret() -> None:
    body = callback_body(finished_job("http://hooks.example.com/"))
    header = sign(body, SECRET)
    assert verify_signature(body, header, SECRET)
    assert not verify_signature(body.replace(b"COMPLETED", b"FAILED"), header, SECRET)
    assert not verify_signature(body, header, "another secret")
    assert not verify_signature(body, None, SECRET)
    assert not verify_signature(body, header.removeprefix("sha256="), SECRET)


def test_two_server_errors_then_success_take_exactly_three_tries(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    waits: list[float] = []
    delivery = send_callback(finished_job(receiver.url), QUICK, sleep=waits.append)
    assert (delivery.delivered, delivery.tries, delivery.status) == (True, 3, 200)
    assert len(receiver.received) == 3
    # The same signed body each time, after waits that double.
    assert len({request.body for request in receiver.received}) == 1
    assert all(verify_signature(r.body, r.headers[SIGNATURE_HEADER], SECRET) for r in receiver.received)
    assert waits == [0.01, 0.02]


def test_a_receiver_that_keeps_failing_is_tried_the_bounded_number_of_times(receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    delivery = send_callback(finished_job(receiver.url), CallbackSettings(allowed_hosts=LOCAL, tries=3, backoff=0.01))
    assert (delivery.delivered, delivery.tries, delivery.status) == (False, 3, 500)
    assert delivery.reason == "the receiver answered 500"
    assert len(receiver.received) == 3


def test_a_refusal_is_not_asked_again(receiver: Receiver) -> None:
    receiver.statuses = [404]
    delivery = send_callback(finished_job(receiver.url), QUICK)
    assert (delivery.delivered, delivery.tries, delivery.status) == (False, 1, 404)
    assert len(receiver.received) == 1


def test_a_receiver_that_does_not_answer_in_time_is_tried_again(receiver: Receiver) -> None:
    receiver.statuses = [None]
    delivery = send_callback(
        finished_job(receiver.url), CallbackSettings(allowed_hosts=LOCAL, tries=2, backoff=0.01, timeout=2.0)
    )
    assert (delivery.delivered, delivery.tries) == (True, 2)
    assert len(receiver.received) == 2


def unreachable_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hook"


def test_an_unreachable_receiver_is_given_up_without_raising() -> None:
    waits: list[float] = []
    delivery = send_callback(
        finished_job(unreachable_url()), CallbackSettings(allowed_hosts=LOCAL, tries=3, backoff=0.5), sleep=waits.append
    )
    assert (delivery.delivered, delivery.tries, delivery.status) == (False, 3, None)
    assert "ConnectError" in delivery.reason
    assert waits == [0.5, 1.0]


def test_a_job_without_callback_sends_nothing() -> None:
    assert send_callback(finished_job(""), QUICK).tries == 0


def test_the_allow_list_is_checked_again_when_sending(receiver: Receiver) -> None:
    delivery = send_callback(finished_job(receiver.url), CallbackSettings(allowed_hosts=["hooks.example.com"]))
    assert not delivery.delivered
    assert delivery.reason == (
        "callback host '127.0.0.1' is not one this service may call: callback_hosts allows hooks.example.com"
    )
    assert receiver.received == []


def test_submission_checks_the_callback_host() -> None:
    check_callback("https://Hooks.Example.com:8443/j", ["hooks.example.com"])
    check_callback("http://anywhere.example.org/", None)
    with pytest.raises(Forbidden) as refused:
        check_callback("http://169.254.169.254/latest/meta-data", ["hooks.example.com"])
    assert refused.value.status == 403
    assert refused.value.reason == (
        "callback host '169.254.169.254' is not one this service may call: callback_hosts allows hooks.example.com"
    )
    with pytest.raises(BadRequest, match="callback must be an http or https URL"):
        check_callback("file:///etc/passwd", None)


def test_each_try_of_a_pending_callback_is_recorded_in_the_store(receiver: Receiver, tmp_path: Path) -> None:
    receiver.statuses = [503, None]  # a server error, then no answer in time
    settings = CallbackSettings(secret=SECRET, allowed_hosts=LOCAL, tries=4, backoff=0.5, timeout=0.3)
    clock = [1_700_000_000.0]
    with JobStore(tmp_path, clock=lambda: clock[0]) as store:
        job = store.submit(finished_job(receiver.url))
        store.claim_next()
        finished = store.complete(job.id, "Hello there.", [], 1.0)
        assert finished is not None

        def next_try() -> tuple[bool, str]:
            (pending,) = store.claim_callbacks(1, hold_s=60)
            attempt = deliver_pending(pending, settings, store)
            return attempt.delivered, attempt.reason

        assert next_try() == (False, "the receiver answered 503")
        (pending,) = store.pending_callbacks()
        assert (pending.tries, pending.next_try_at) == (1, clock[0] + 0.5)  # backoff
        clock[0] += 0.5
        delivered, reason = next_try()
        assert not delivered and "Timeout" in reason
        (pending,) = store.pending_callbacks()
        assert (pending.tries, pending.next_try_at) == (2, clock[0] + 1.0)  # doubled
        assert store.get(job.id).callback_error == ""  # still due
        clock[0] += 1.0
        assert next_try() == (True, "")
        assert store.pending_callbacks() == [] and store.get(job.id).callback_error == ""
    assert [request.body for request in receiver.received] == [callback_body(finished)] * 3
    assert all(verify_signature(r.body, r.headers[SIGNATURE_HEADER], SECRET) for r in receiver.received)


def test_a_pending_callback_is_given_up_after_its_tries_with_the_reason_on_the_job(receiver: Receiver, tmp_path: Path) -> None:
    receiver.statuses = [500] * 5
    settings = CallbackSettings(allowed_hosts=LOCAL, tries=2, backoff=0)
    with JobStore(tmp_path) as store:
        job = store.submit(finished_job(receiver.url))
        store.claim_next()
        store.complete(job.id, "Hello there.", [], 1.0)
        for _ in range(2):
            (pending,) = store.claim_callbacks(1, hold_s=60)
            deliver_pending(pending, settings, store)
        assert store.pending_callbacks() == []
        assert store.get(job.id).callback_error == "the receiver answered 500"
    assert len(receiver.received) == 2


def test_a_refused_pending_callback_is_over_at_once(receiver: Receiver, tmp_path: Path) -> None:
    receiver.statuses = [404]
    with JobStore(tmp_path) as store:
        job = store.submit(finished_job(receiver.url))
        store.claim_next()
        store.complete(job.id, "Hello there.", [], 1.0)
        (pending,) = store.claim_callbacks(1, hold_s=60)
        assert deliver_pending(pending, QUICK, store).final
        assert store.pending_callbacks() == []
        assert store.get(job.id).to_json()["callback_error"] == "the receiver answered 404"


def test_each_try_of_a_pending_callback_goes_to_the_metrics_with_its_outcome(receiver: Receiver, tmp_path: Path) -> None:
    receiver.statuses = [500, 500, 500, 200]
    settings = CallbackSettings(allowed_hosts=LOCAL, tries=2, backoff=0)
    metrics = RecordedMetrics()
    with JobStore(tmp_path) as store:
        for name in ("given-up", "delivered"):
            job = store.submit(Job(path=f"/data/{name}.wav", output_path="/data/out", model="tiny.en", callback=receiver.url))
            store.claim_next()
            store.complete(job.id, "Hello there.", [], 1.0)
            for _ in range(2):
                (pending,) = store.claim_callbacks(1, hold_s=60)
                deliver_pending(pending, settings, store, metrics=metrics)
    outcomes = [tags["outcome"] for tags in metrics.tagged(CALLBACKS)]
    assert outcomes == ["retrying", "undelivered", "retrying", "delivered"]
