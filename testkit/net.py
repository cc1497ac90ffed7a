"""Local ports for servers a test or the demo starts."""

from __future__ import annotations

import socket


def free_port(preferred: int | None = None) -> int:
    """A port nothing listens on: ``preferred`` or the next free one above it, else one the OS picks."""
    if preferred is not None:
        for port in range(preferred, preferred + 20):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) != 0:
                    return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
