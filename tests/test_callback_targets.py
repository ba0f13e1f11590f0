"""Where callbacks may go: public addresses, or the hosts callback_hosts names; never inside.

Only loopback addresses are ever connected to. Tests of other addresses resolve names with a
stand-in resolver and run under `no_connections`, which fails any connection the code would
open, so a wrong answer sends nothing either; and no name but localhost is ever looked up.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from receiver import Receiver, running_receiver
from test_jobs_callbacks import finished_job

from serve_app.errors import Forbidden
from serve_app.jobs import (
    SIGNATURE_HEADER,
    CallbackSettings,
    JobFolders,
    JobStore,
    admit_submission,
    callback_client,
    check_callback,
    deliver_pending,
    send_callback,
    targets,
    verify_signature,
)

SECRET = "target-test-secret"
ANYWHERE = CallbackSettings(secret=SECRET, tries=3, backoff=0.0, timeout=5)
ONLY_PUBLIC = "callbacks go only to public addresses, unless the service's callback_hosts names the host"
NAME = "hooks.example.test"  # a reserved name (RFC 6761): real DNS never answers it


def resolving(*addresses: str):
    """A getaddrinfo stand-in: every name resolves to `addresses`; it counts its calls."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        resolve.calls.append(host)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    resolve.calls = []
    return resolve


@pytest.fixture(autouse=True)
def names_stay_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS query leaves the machine, even from a broken build: only literal addresses and
    localhost (in /etc/hosts) are resolved."""
    system = socket.getaddrinfo

    def local_only(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        return system(host, port, family, type, proto, flags if host == "localhost" else flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connection refused on the spot, and its address kept: the test asserts none."""
    attempts: list[Any] = []

    def refuse(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"the test forbids connecting to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def ipv6_receiver() -> Iterator[Receiver]:
    try:
        with running_receiver("::1") as running:
            yield running
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")


def port_of(receiver: Receiver) -> int:
    return httpx.URL(receiver.url).port


# Refused at submission: what the URL shows.


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.1", "a loopback address"),
        ("2130706433", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("[::ffff:127.0.0.1]", "a loopback address"),
        ("localhost", "a loopback name"),
        ("LocalHost.", "a loopback name"),
        ("dashboard.localhost", "a loopback name"),
        ("0.0.0.0", "an unspecified address"),
        ("[::]", "an unspecified address"),
        ("169.254.169.254", "a link-local address"),
        ("[fe80::1]", "a link-local address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("[fd00::1]", "a private address"),
        ("[::ffff:10.0.0.5]", "a private address"),
        ("[64:ff9b::a00:5]", "a private address"),
        ("[2002:a00:5::1]", "a private address"),
        ("100.64.0.1", "a special-purpose address"),
        ("224.0.0.1", "a multicast address"),
        ("[ff02::1]", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("[fec0::1]", "a site-local address"),
    ],
)
def test_a_url_showing_an_inside_address_is_refused_at_submission(host: str, kind: str) -> None:
    with pytest.raises(Forbidden) as refused:
        check_callback(f"http://{host}:8265/api/jobs", None)
    assert refused.value.status == 403
    assert refused.value.reason == f"callback host {host.strip('[]').lower()!r} is {kind}: {ONLY_PUBLIC}"


@pytest.mark.parametrize(
    "host",
    ["hooks.example.com", "8.8.8.8", "[2001:4860:4860::8888]", "[::ffff:8.8.8.8]", "[64:ff9b::808:808]", "[2002:808:808::1]"],
)
def test_a_public_host_is_taken(host: str) -> None:
    check_callback(f"https://{host}/hook", None)


def test_the_api_refuses_the_submission_with_403(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    folders = JobFolders([tmp_path], [tmp_path])
    body = {"path": str(tmp_path / "a.wav"), "callback": "http://169.254.169.254/latest/meta-data/"}
    with pytest.raises(Forbidden) as refused:
        admit_submission(body, folders=folders, default_model="tiny.en")
    assert refused.value.reason == f"callback host '169.254.169.254' is a link-local address: {ONLY_PUBLIC}"
    body["callback"] = "https://hooks.example.com/j"
    assert admit_submission(body, folders=folders, default_model="tiny.en").callback == "https://hooks.example.com/j"


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.1:9/"),
        (["::1"], "http://[::1]:9/"),
        (["[::1]"], "http://[0::1]:9/"),
        (["LOCALHOST"], "http://localhost:9/"),
        (["hooks.example.com"], "https://Hooks.Example.com./"),
    ],
)
def test_callback_hosts_allows_the_hosts_it_names_wherever_they_are(allowed: list[str], url: str) -> None:
    check_callback(url, allowed)


def test_callback_hosts_refuses_every_other_host() -> None:
    with pytest.raises(Forbidden) as refused:
        check_callback("http://localhost:8265/", ["127.0.0.1"])
    assert refused.value.reason == "callback host 'localhost' is not one this service may call: callback_hosts allows 127.0.0.1"


# Refused when sending, before anything is sent.


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]", "127.1"])
def test_a_loopback_listener_gets_nothing(receiver: Receiver, host: str) -> None:
    delivery = send_callback(finished_job(f"http://{host}:{port_of(receiver)}/hooks/job"), ANYWHERE)
    assert not delivery.delivered
    assert delivery.reason.endswith(ONLY_PUBLIC)
    assert (receiver.received, receiver.connections) == ([], 0)


def test_an_ipv6_loopback_listener_gets_nothing(ipv6_receiver: Receiver) -> None:
    delivery = send_callback(finished_job(ipv6_receiver.url), ANYWHERE)
    assert delivery.reason == f"callback host '::1' is a loopback address: {ONLY_PUBLIC}"
    assert (ipv6_receiver.received, ipv6_receiver.connections) == ([], 0)


def test_a_name_the_system_resolves_to_loopback_is_not_connected_to(receiver: Receiver) -> None:
    """The connection check on its own, with the real resolver: localhost is in /etc/hosts."""
    with callback_client(None, timeout=5) as http, pytest.raises(Forbidden) as refused:
        http.post(f"http://localhost:{port_of(receiver)}/hooks/job", content=b"{}")
    assert refused.value.reason == f"callback host 'localhost' resolves to 127.0.0.1, which is a loopback address: {ONLY_PUBLIC}"
    assert (receiver.received, receiver.connections) == ([], 0)


def test_a_name_that_resolves_to_loopback_fails_the_delivery_with_the_reason_on_the_job(
    receiver: Receiver, tmp_path: Path
) -> None:
    resolve = resolving("127.0.0.1")
    with JobStore(tmp_path) as store:
        job = store.submit(finished_job(f"http://{NAME}:{port_of(receiver)}/hooks/job"))
        store.claim_next()
        store.complete(job.id, "Hello.", [], 1.0)
        (pending,) = store.claim_callbacks(1, hold_s=60)
        attempt = deliver_pending(pending, ANYWHERE, store, resolve=resolve)
        shown = store.get(job.id).to_json()
        assert store.pending_callbacks() == []  # over after one try
    reason = f"callback host '{NAME}' resolves to 127.0.0.1, which is a loopback address: {ONLY_PUBLIC}"
    assert (attempt.delivered, attempt.final, attempt.reason) == (False, True, reason)
    assert (shown["status"], shown["callback_error"]) == ("COMPLETED", reason)
    assert resolve.calls == [NAME], "a refusal is final: not asked again"
    assert (receiver.received, receiver.connections) == ([], 0)


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["169.254.169.254"], "169.254.169.254, which is a link-local address"),
        (["10.0.0.5"], "10.0.0.5, which is a private address"),
        (["8.8.8.8", "10.0.0.5"], "10.0.0.5, which is a private address"),
        (["2001:4860:4860::8888", "fd12::5"], "fd12::5, which is a private address"),
        (["100.64.0.1"], "100.64.0.1, which is a special-purpose address"),
        (["0.0.0.0"], "0.0.0.0, which is an unspecified address"),
    ],
)
def test_a_name_with_any_inside_address_is_refused_before_connecting(
    no_connections: list[Any], addresses: list[str], refused: str
) -> None:
    delivery = send_callback(finished_job(f"https://{NAME}/hook"), ANYWHERE, resolve=resolving(*addresses))
    assert not delivery.delivered
    assert delivery.reason == f"callback host '{NAME}' resolves to {refused}: {ONLY_PUBLIC}"
    assert no_connections == []


def test_a_name_that_does_not_resolve_is_tried_again(no_connections: list[Any]) -> None:
    def fails(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    delivery = send_callback(finished_job(f"https://{NAME}/hook"), ANYWHERE, resolve=fails, sleep=lambda _: None)
    assert (delivery.delivered, delivery.tries) == (False, 3)
    assert delivery.reason == f"ConnectError: cannot resolve {NAME}: [Errno -2] Name or service not known"
    assert no_connections == []


def test_the_allow_list_checked_when_sending_sends_nothing(no_connections: list[Any]) -> None:
    settings = CallbackSettings(allowed_hosts=["hooks.example.com"], backoff=0.0)
    delivery = send_callback(finished_job("http://169.254.169.254/latest/meta-data/"), settings)
    assert delivery.reason == (
        "callback host '169.254.169.254' is not one this service may call: callback_hosts allows hooks.example.com"
    )
    assert no_connections == []


# Allowed: the operator named the host.


def test_a_named_loopback_host_gets_the_signed_body(receiver: Receiver) -> None:
    job = finished_job(receiver.url)
    settings = CallbackSettings(secret=SECRET, allowed_hosts=["127.0.0.1"], backoff=0.0)
    assert send_callback(job, settings).delivered
    (request,) = receiver.received
    assert json.loads(request.body) == job.to_json()
    assert verify_signature(request.body, request.headers[SIGNATURE_HEADER], SECRET)


def test_a_named_host_may_resolve_to_loopback(receiver: Receiver) -> None:
    url = f"http://localhost:{port_of(receiver)}/hooks/job"
    assert send_callback(finished_job(url), CallbackSettings(allowed_hosts=["localhost"], backoff=0.0)).delivered
    assert receiver.received[0].headers["Host"] == f"localhost:{port_of(receiver)}"


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    with running_receiver() as target:
        receiver.statuses, receiver.location = [302], target.url
        delivery = send_callback(finished_job(receiver.url), CallbackSettings(allowed_hosts=["127.0.0.1"], backoff=0.0))
        assert (delivery.delivered, delivery.tries, delivery.reason) == (False, 1, "the receiver answered 302")
        assert len(receiver.received) == 1
        assert (target.received, target.connections) == ([], 0)


# How the connection goes to the checked address: the name stays in Host, SNI and the certificate.


@pytest.fixture
def loopback_counts_as_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only so that a local server can stand in for a public receiver."""
    judge = targets.not_public
    monkeypatch.setattr(targets, "not_public", lambda ip: None if ip == ipaddress.ip_address("127.0.0.1") else judge(ip))


def test_the_connection_goes_to_the_checked_address_under_the_name(receiver: Receiver, loopback_counts_as_public: None) -> None:
    resolve = resolving("127.0.0.1")
    delivery = send_callback(finished_job(f"http://{NAME}:{port_of(receiver)}/hooks/job"), ANYWHERE, resolve=resolve)
    assert delivery.delivered
    assert resolve.calls == [NAME], "resolved once, by the check, and not again"
    assert receiver.received[0].headers["Host"] == f"{NAME}:{port_of(receiver)}"


def tls_for(name: str, tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str | None]]:
    """A server context with a self-signed certificate for `name`, a client context that
    trusts only it, and the SNI names the server was asked for."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    asked: list[str | None] = []
    server.sni_callback = lambda sock, server_name, context: asked.append(server_name)
    client = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    return server, client, asked


def test_https_checks_the_certificate_for_the_name_and_sends_it_as_sni(tmp_path: Path, loopback_counts_as_public: None) -> None:
    server, client, asked = tls_for(NAME, tmp_path)
    with running_receiver(tls=server) as receiver:
        url = f"https://{NAME}:{port_of(receiver)}/hooks/job"
        with callback_client(None, timeout=5, resolve=resolving("127.0.0.1"), verify=client) as http:
            assert http.post(url, content=b"{}").status_code == 200
        assert asked == [NAME]
        assert receiver.received[0].headers["Host"] == f"{NAME}:{port_of(receiver)}"


def test_https_refuses_a_certificate_for_another_name(tmp_path: Path, loopback_counts_as_public: None) -> None:
    server, client, _ = tls_for("other.example.test", tmp_path)
    with running_receiver(tls=server) as receiver:
        with callback_client(None, timeout=5, resolve=resolving("127.0.0.1"), verify=client) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                http.post(f"https://{NAME}:{port_of(receiver)}/hooks/job", content=b"{}")
        assert receiver.received == []
