"""Where a callback may connect: public addresses only, unless the operator names the host.

A callback makes the server send a request from inside its own network, to a URL a user
chose, so without a rule a job could make it POST to its own loopback services (the Ray
dashboard), to the cloud's metadata service at 169.254.169.254, or to any private host
(server-side request forgery). The rule:

- `callback_hosts` unset: a callback may go to any host whose addresses are all public.
  An address is public when Python's `ipaddress` calls it global and it is neither
  multicast, reserved nor IPv6 site-local. That refuses unspecified (0.0.0.0, ::),
  loopback (127/8, ::1), link-local (169.254/16, fe80::/10), private (10/8, 172.16/12,
  192.168/16, fc00::/7), shared (100.64/10), benchmarking, documentation, multicast and
  reserved (240/4) addresses. An IPv6 address that carries an IPv4 one is judged by that
  IPv4 address too: IPv4-mapped (::ffff:127.0.0.1), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
- `callback_hosts` set: only the hosts it names (as written in the URL, or the literal
  address), wherever they resolve: the operator allowed them, private or not.

It is checked twice. At submission, on what the URL shows, without asking DNS: a literal
address, or a `localhost` name (RFC 6761). When sending, on the addresses the host name
resolves to: PublicOnlyBackend resolves it once, checks every address, and connects to a
checked one, so a name cannot resolve to a public address for the check and to a private
one for the connection. Redirects are never followed, so the checked host is the only one.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Collection, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from serve_app.errors import Forbidden
from serve_app.jobs.job import check_callback_url

__all__ = ["PublicOnlyBackend", "callback_client", "check_callback", "not_public"]

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]
"""socket.getaddrinfo, or a stand-in with its signature."""

ONLY_PUBLIC = "callbacks go only to public addresses, unless the service's callback_hosts names the host"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def not_public(ip: IPAddress) -> str | None:
    """What `ip` is when it is not public ("a loopback address", "a private address"...), or None."""
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return not_public(ip.ipv4_mapped)
        if ip in _NAT64:  # inside ::/8, which ipaddress calls reserved, but it reaches IPv4 hosts
            return not_public(IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (kind := not_public(ip.sixtofour)):
            return kind
    return _kind(ip)


def _kind(ip: IPAddress) -> str | None:
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private", "site_local"):
        if getattr(ip, f"is_{kind}", False):
            return f"{'an' if kind == 'unspecified' else 'a'} {kind.replace('_', '-')} address"
    return None if ip.is_global else "a special-purpose address"


def _address(host: str) -> IPAddress | None:
    """The address a host written as a literal one means (127.1 and 2130706433 included), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return ipaddress.ip_address(infos[0][4][0])


def _normal(host: str) -> str:
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    address = _address(host)
    return str(address) if address is not None else host.rstrip(".")


def check_callback(url: str, allowed_hosts: Collection[str] | None) -> None:
    """For submission, and again before sending: BadRequest when `url` is not an http(s)
    URL; Forbidden when its host is not among `allowed_hosts`, or, with no list, when the
    URL shows a non-public address (a literal one, or a localhost name)."""
    check_callback_url(url)
    host = urlsplit(url).hostname or ""
    if allowed_hosts is not None:
        if _normal(host) not in {_normal(allowed) for allowed in allowed_hosts}:
            allowed = ", ".join(sorted(allowed_hosts)) or "no host"
            raise Forbidden(f"callback host {host!r} is not one this service may call: callback_hosts allows {allowed}")
        return
    address = _address(host)
    kind = not_public(address) if address is not None else None
    if kind is not None:
        raise Forbidden(f"callback host {host!r} is {kind}: {ONLY_PUBLIC}")
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise Forbidden(f"callback host {host!r} is a loopback name: {ONLY_PUBLIC}")


class PublicOnlyBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, opened only to public addresses: the host is resolved once
    with `resolve`, every address it has is checked, and the connection goes to a checked
    address (given to the socket as a literal, so nothing resolves it again). httpcore
    still starts TLS with the URL's host name, so SNI and the certificate check are for
    the name, and httpx still sends the name in the Host header.

    A non-public address raises Forbidden before any connection is made; a name that does
    not resolve raises httpcore.ConnectError (a try that may be repeated).
    """

    def __init__(self, resolve: Resolver | None = None) -> None:
        self._resolve = resolve or socket.getaddrinfo
        self._sockets = httpcore.SyncBackend()

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses of `host`, in the resolver's order; Forbidden if any is not public."""
        try:
            infos = self._resolve(host.removeprefix("[").removesuffix("]"), port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        for address in addresses:
            kind = not_public(address)
            if kind is not None:
                shown = repr(host) if str(address) == host else f"{host!r} resolves to {address}, which"
                raise Forbidden(f"callback host {shown} is {kind}: {ONLY_PUBLIC}")
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.addresses(host, port):
            try:
                return self._sockets.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        raise Forbidden("callbacks do not go to Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class _PublicOnlyTransport(httpx.HTTPTransport):
    def __init__(self, backend: PublicOnlyBackend, verify: ssl.SSLContext | bool) -> None:
        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=context, trust_env=False)
        # httpx takes no network backend, so its pool is built again with ours: the same
        # pool it builds without a proxy.
        self._pool = httpcore.ConnectionPool(ssl_context=context, network_backend=backend)


def callback_client(
    allowed_hosts: Collection[str] | None,
    *,
    timeout: float,
    resolve: Resolver | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.Client:
    """The client callbacks are sent with: no redirects, no proxy or .netrc from the
    environment, and, without `allowed_hosts`, connections to public addresses only. With
    `allowed_hosts`, check_callback has limited the URL to the named hosts, which may be
    anywhere. `resolve`: socket.getaddrinfo unless given."""
    if allowed_hosts is None:
        transport: httpx.HTTPTransport = _PublicOnlyTransport(PublicOnlyBackend(resolve), verify)
    else:
        transport = httpx.HTTPTransport(verify=verify, trust_env=False)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
