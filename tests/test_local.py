"""serve_app.local's helpers that need no Ray running."""

from __future__ import annotations

import socket

from serve_app.local import free_ports


def test_free_ports_are_distinct_and_each_can_be_bound() -> None:
    # Ray refuses to start when two of its components are given one port (CI saw the dashboard's
    # and its agent's collide), so the ports asked for together must differ.
    ports = free_ports(256)
    assert len(set(ports)) == len(ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
